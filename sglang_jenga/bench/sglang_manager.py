"""sglang 0.5.23's own memory management as a replayed manager: its real pools, allocators and
UnifiedRadixCache (sgl_build.py), driven with real `Req` objects through the functions its scheduler calls.

  admit    `Req.init_next_round_input` (match_kv_cache, copy-on-write of a matched Mamba state), lock the
           match (`tree_cache.lock`, as PrefillAdder does), check the token budget (`_fits`: the extend
           against available + evictable tokens, as PrefillAdder), `alloc_req_slots` (request row, Mamba slot), then
           per prefill chunk of `chunk` tokens (mllama: one chunk, as sglang has no multimodal chunked prefill
           for it): `allocator.evict_to_free_tokens` + `allocator.alloc`, write the row,
           `checkpoint_kv_cache` (insert into the tree and move the lock, as after every prefill chunk).
  decode   `tree_cache.evict_sliding_windows` for requests whose window slid `SGLANG_SWA_EVICTION_INTERVAL`
           (128) tokens (ScheduleBatch.maybe_evict_swa), then one `alloc` for the batch (alloc_token_slots'
           evict + alloc) and one row write.
  finish   `release_kv_cache(req, tree_cache, checkpoint=True)` (insert, free the rest, unlock).
  retract  `release_kv_cache(..., checkpoint=False)` (ScheduleBatch.release_req).

Layouts (profiles.sglang_layout): "full" (one row per token for every attention layer; mllama's encoder
tokens are the first tokens of the row), "swa" (full + SWA pools, SWA tokens = full tokens x ratio, sizing of
pool_configurator.HybridSWAPoolConfigurator: full_tokens = budget // (full_bytes + ratio * swa_bytes)),
"mamba" (Mamba slots = (budget * r/(1+r) - slot) // slot, the rest for full-attention tokens, max running =
slots // 3). The byte sizes come from the model's real shapes; the tensors behind the pools are tiny.

Modelled rather than run: the forward pass (KV contents, Mamba copy kernels), PrefillAdder's admission budget
(the replay scheduler's headroom rule replaces it, for every manager alike), the overlap scheduler. A match
that ends inside an image's encoder tokens is treated as a miss, as sglang's prepare_encoder_info_extend
requires (it asserts the encoder part is all or nothing).
"""

from __future__ import annotations

import zlib
from array import array
from typing import Any

import numpy as np

from sglang_jenga.core import ModelSpec

from .managers import Footprint, Manager, PoolUsage, Seq
from .profiles import SglangLayout, attention_bytes, readable_bytes, sglang_layout, state_bytes
from .sgl_build import build_full, build_mamba, build_swa, init_sglang

SWA_EVICTION_INTERVAL = 128  # sglang environ SGLANG_SWA_EVICTION_INTERVAL default
MAMBA_SLOTS_PER_REQUEST = 3  # kv_cache_configurator MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO


def swa_pool_tokens(layout: SglangLayout, pool_bytes: int, ratio: float) -> tuple[int, int]:
    """(full, swa) tokens sglang sizes from `pool_bytes` at --swa-full-tokens-ratio `ratio`.

    Ministral-8B, 40 GiB, 0.8: full 36,864 B + 0.8 * 110,592 B per token -> 342,669 full, 274,135 SWA tokens."""
    full = int(pool_bytes // (layout.full_token_bytes + ratio * layout.swa_token_bytes))
    return full, int(full * ratio)


def mamba_pool_sizes(layout: SglangLayout, pool_bytes: int, ratio: float) -> tuple[int, int]:
    """(full tokens, Mamba slots) at --mamba-full-memory-ratio `ratio` (one padding slot is charged too)."""
    per = layout.state_bytes
    slots = int((pool_bytes * ratio / (1 + ratio) - per) // per)
    return int((pool_bytes - (slots + 1) * per) // layout.full_token_bytes), slots


class SglangManager(Manager):
    """sglang's pools for `model` in `pool_bytes` (module docstring). `uniform=True` builds the paper's
    baseline instead: every attention layer full attention in one token pool (Mamba hybrids: ValueError)."""

    def __init__(self, model: ModelSpec, pool_bytes: int, *, req_slots: int, max_context: int,
                 name: str = "sglang", ratio: float | None = None, force_hybrid_swa: bool = False,
                 uniform: bool = False, chunk: int = 8192, max_running: int = 2048,
                 tree_core: str | None = None) -> None:
        init_sglang()
        self.name, self.model, self.max_running = name, model, max_running
        layout = sglang_layout(model, force_hybrid_swa=force_hybrid_swa)
        if uniform:
            if state_bytes(model):
                raise ValueError(f"{model.name}: no uniform-page baseline for Mamba state")
            layout = layout._replace(kind="full", full_token_bytes=attention_bytes(model), swa_token_bytes=0,
                                     window=None)
        self.layout = layout
        self.chunk = 1 << 62 if layout.encoder_in_pool else chunk
        self.ratio = ratio
        slots = min(req_slots, max_running) + 1
        if layout.kind == "swa":
            self.ratio = 0.8 if ratio is None else ratio
            self.full_tokens, self.swa_tokens = swa_pool_tokens(layout, pool_bytes, self.ratio)
            if self.swa_tokens <= (layout.window or 0) + 1:
                raise ValueError(f"SWA pool of {self.swa_tokens} tokens cannot hold one window")
            assert layout.window is not None
            self.pools = build_swa(self.full_tokens, self.swa_tokens, layout.window, slots, max_context, tree_core)
            self.mamba_slots = 0
        elif layout.kind == "mamba":
            self.ratio = 0.9 if ratio is None else ratio
            self.full_tokens, self.mamba_slots = mamba_pool_sizes(layout, pool_bytes, self.ratio)
            self.swa_tokens = 0
            self.max_running = min(max_running, self.mamba_slots // MAMBA_SLOTS_PER_REQUEST)
            if self.max_running < 1 or self.full_tokens < 1:
                raise ValueError(f"ratio {self.ratio}: {self.mamba_slots} Mamba slots, {self.full_tokens} tokens")
            slots = min(slots, self.max_running + 1)
            self.pools = build_mamba(self.full_tokens, self.mamba_slots, slots, max_context, tree_core)
        else:
            self.full_tokens, self.swa_tokens, self.mamba_slots = pool_bytes // layout.full_token_bytes, 0, 0
            self.pools = build_full(self.full_tokens, slots, max_context, tree_core)
        self.req_pool, self.alloc, self.cache = self.pools
        self._rid = 0
        self._imports()

    def _imports(self) -> None:
        import torch
        from sglang.srt.managers.schedule_batch import FINISH_LENGTH, Req
        from sglang.srt.mem_cache.allocation import ensure_mamba_capacity
        from sglang.srt.mem_cache.common import checkpoint_kv_cache, release_kv_cache
        from sglang.srt.sampling.sampling_params import SamplingParams

        self.torch, self.Req, self.SamplingParams, self.FINISH_LENGTH = torch, Req, SamplingParams, FINISH_LENGTH
        self.checkpoint_kv_cache, self.release_kv_cache = checkpoint_kv_cache, release_kv_cache
        self.ensure_mamba_capacity = ensure_mamba_capacity

    # ------------------------------------------------------------------------------------------- tokens
    def _enc(self, seq: Seq) -> int:
        return seq.image_tokens if self.layout.encoder_in_pool else 0

    def _row_tokens(self, seq: Seq) -> np.ndarray:
        """The row as sglang keys it: the image's pad tokens (one value per image) before the text."""
        enc = self._enc(seq)
        if not enc:
            return seq.tokens
        pad = (1 << 50) + zlib.crc32(str(seq.image_key).encode())
        return np.concatenate([np.full(enc, pad, dtype=np.int64), seq.tokens])

    # ------------------------------------------------------------------------------------------- admit
    def admit(self, seq: Seq, kv_len: int) -> int | None:
        enc, toks = self._enc(seq), self._row_tokens(seq)
        n = enc + kv_len
        self._rid += 1
        req = self.Req(rid=f"{seq.req.id}#{self._rid}", origin_input_text="",
                       origin_input_ids=array("q", toks[:n].tolist()),
                       sampling_params=self.SamplingParams(temperature=0, max_new_tokens=seq.req.output_len))
        req.init_next_round_input(self.cache)
        if 0 < req.prefix_len < enc:
            self._rematch_empty(req)
        hit = req.prefix_len
        req.lock = self.cache.lock(req.last_node)
        seq.state = req
        if not self._fits(n - hit) or not self._alloc_row(req, hit) or not self._prefill(req, hit, n):
            self._rollback(req)
            seq.state = None
            return None
        req.output_ids.append(int(toks[n]))
        return max(0, int(hit) - enc)

    def _fits(self, extend: int) -> bool:
        """PrefillAdder's token budget, before anything is allocated: the extend in the full pool and, for
        SWA, min(extend, window + chunk) in the SWA pool, against available + evictable tokens."""
        lay, c, a = self.layout, self.cache, self.alloc
        if lay.kind == "swa":
            swa_need = min(extend, (lay.window or 0) + min(extend, self.chunk))
            return bool(a.full_available_size() + c.full_evictable_size() >= extend
                        and a.swa_available_size() + c.swa_evictable_size() >= swa_need)
        return bool(a.available_size() + c.full_evictable_size() >= extend)

    def _rematch_empty(self, req: Any) -> None:
        """A hit inside the encoder tokens is unusable: start from the root."""
        req.prefix_len = 0
        req.last_node = self.cache.root_node_handle(req.extra_key)
        req.kv.cache_protected_len = 0

    def _alloc_row(self, req: Any, hit: int) -> bool:
        """alloc_req_slots (request row, Mamba slot) without its fail-loud raise; write the matched prefix."""
        self.ensure_mamba_capacity(self.req_pool, [req], self.cache)
        if self.req_pool.alloc([req]) is None:
            return False
        if hit:
            self.req_pool.write((req.kv.req_pool_idx, slice(0, hit)), self.cache.prefix_device_indices(req))
        return True

    def _prefill(self, req: Any, start: int, end: int) -> bool:
        pos = start
        while pos < end:
            stop = min(end, pos + self.chunk)
            locs = self._alloc_tokens(stop - pos)
            if locs is None:
                return False
            self.req_pool.write((req.kv.req_pool_idx, slice(pos, stop)), locs)
            req.kv.kv_committed_len = req.kv.kv_allocated_len = stop
            req.extend_end = stop
            self.checkpoint_kv_cache(req, self.cache)
            pos = stop
        return True

    def _alloc_tokens(self, n: int) -> Any:
        """alloc_token_slots without its fail-loud raise: evict for `n` tokens, then allocate (None)."""
        self.alloc.evict_to_free_tokens(self.cache, n)
        return self.alloc.alloc(n)

    def _rollback(self, req: Any) -> None:
        """Undo a failed admission: release_kv_cache once a chunk was allocated, else free the row, the
        Mamba slot and the lock by hand (release_kv_cache asserts a held row has KV)."""
        if req.kv.holds_kv and req.kv.kv_allocated_len:
            self.release_kv_cache(req, self.cache, checkpoint=False)
            return
        self.cache.unlock(req.lock)
        req.lock = None
        if req.kv.holds_mamba:
            self.req_pool.free_mamba_cache(req)
        if req.kv.holds_kv:
            self.req_pool.free(req)

    # ------------------------------------------------------------------------------------------ decode
    def decode(self, batch: list[Seq]) -> bool:
        reqs = [s.state for s in batch]
        if self.layout.kind == "swa":
            self._maybe_evict_swa(reqs)
        locs = self._alloc_tokens(len(reqs))
        if locs is None:
            return False
        torch = self.torch
        rows = torch.tensor([r.kv.req_pool_idx for r in reqs], dtype=torch.int64)
        cols = torch.tensor([r.kv.kv_committed_len for r in reqs], dtype=torch.int64)
        self.req_pool.req_to_token[rows, cols] = locs.to(torch.int32)
        for s, r in zip(batch, reqs, strict=True):
            r.kv.kv_committed_len += 1
            r.kv.kv_allocated_len = r.kv.kv_committed_len
            if s.kv_len + 1 < len(s.tokens):  # the token this step produces
                r.output_ids.append(int(s.tokens[s.kv_len + 1]))
        return True

    def _maybe_evict_swa(self, reqs: list[Any]) -> None:
        """ScheduleBatch.maybe_evict_swa for a decode batch (eviction-interval trigger)."""
        from sglang.srt.mem_cache.unified_cache.components.base import ComponentType

        window = self.cache.swa_retain_window
        self.alloc.free_group_begin()
        for r in reqs:
            pre = r.kv.kv_committed_len
            if pre - window >= r.kv.get_evicted_seqlen(ComponentType.SWA) + SWA_EVICTION_INTERVAL:
                self.cache.evict_sliding_windows(r, pre)
        self.alloc.free_group_end()

    # ------------------------------------------------------------------------------------ finish/retract
    def finish(self, seq: Seq) -> None:
        req = seq.state
        req.finished_reason = self.FINISH_LENGTH(length=seq.req.output_len)
        self.release_kv_cache(req, self.cache, checkpoint=True)
        seq.state = None

    def retract(self, seq: Seq) -> None:
        self.release_kv_cache(seq.state, self.cache, checkpoint=False)
        seq.state = None

    # ------------------------------------------------------------------------------------------ metrics
    def headroom_ok(self, num_requests: int, tokens_each: int) -> bool:
        need = num_requests * tokens_each
        full = int(self.alloc.full_available_size() if self.layout.kind == "swa" else self.alloc.available_size())
        if full + int(self.cache.full_evictable_size()) < need:
            return False
        if self.layout.kind == "swa":
            return int(self.alloc.swa_available_size()) + int(self.cache.swa_evictable_size()) >= need
        return True

    def footprint(self, seq: Seq) -> Footprint:
        req, lay = seq.state, self.layout
        rows = self._enc(seq) + seq.kv_len
        held = rows * lay.full_token_bytes
        if lay.kind == "swa":
            from sglang.srt.mem_cache.unified_cache.components.base import ComponentType

            protected = req.kv.cache_protected_len
            own_from = max(req.kv.get_evicted_seqlen(ComponentType.SWA), protected)
            held += (rows - own_from + min(protected, lay.window or 0)) * lay.swa_token_bytes
        elif lay.kind == "mamba":
            held += lay.state_bytes
        return Footprint(held, readable_bytes(self.model, seq.kv_len, seq.image_tokens))

    def usage(self) -> PoolUsage:
        lay, c = self.layout, self.cache
        total = (self.full_tokens * lay.full_token_bytes + self.swa_tokens * lay.swa_token_bytes
                 + (self.mamba_slots + 1 if self.mamba_slots else 0) * lay.state_bytes)
        if lay.kind == "swa":
            free = (self.alloc.full_available_size() * lay.full_token_bytes
                    + self.alloc.swa_available_size() * lay.swa_token_bytes)
            cached = ((c.full_evictable_size() + c.full_protected_size()) * lay.full_token_bytes
                      + (c.swa_evictable_size() + c.swa_protected_size()) * lay.swa_token_bytes)
        else:
            free = self.alloc.available_size() * lay.full_token_bytes
            cached = (c.full_evictable_size() + c.full_protected_size()) * lay.full_token_bytes
        if lay.kind == "mamba":
            free += self.req_pool.mamba_allocator.available_size() * lay.state_bytes
            cached += (c.mamba_evictable_size() + c.mamba_protected_size()) * lay.state_bytes
        return PoolUsage(int(total), int(free), int(cached), 0)

    def check(self, running: list[Seq]) -> None:
        """sglang's own tree sanity check; it requires an idle tree, so it runs only when nothing runs."""
        if not running:
            self.cache.sanity_check()

    def drain(self) -> bool:
        from sglang.srt.mem_cache.base_prefix_cache import EvictParams

        big = 1 << 62
        self.cache.evict(EvictParams(num_tokens=big, swa_num_tokens=big if self.swa_tokens else 0,
                                     mamba_num=big if self.mamba_slots else 0))
        ok = bool(self.alloc.available_size() == min(self.full_tokens, self.swa_tokens or self.full_tokens))
        if self.layout.kind == "swa":
            ok = bool(self.alloc.full_available_size() == self.full_tokens
                      and self.alloc.swa_available_size() == self.swa_tokens)
        if self.mamba_slots:
            ok = ok and bool(self.req_pool.mamba_allocator.available_size() == self.mamba_slots)
        return ok and bool(self.req_pool.available_size() == self.req_pool.size)

    def describe(self) -> dict[str, Any]:
        return {"layout": self.layout.kind, "ratio": self.ratio, "full_tokens": self.full_tokens,
                "swa_tokens": self.swa_tokens, "mamba_slots": self.mamba_slots,
                "window": self.layout.window}
