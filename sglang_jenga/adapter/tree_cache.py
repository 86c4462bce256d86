"""sglang's prefix cache interface over the jenga core's typed radix tree.

`JengaRadixCache` is a `BasePrefixCache`: the scheduler matches, checkpoints, locks and evicts
through it as through sglang's own caches. Each radix node of the core tree owns typed sub-pages
(full-attention pages for every token, sliding-window pages only where a hit can still use them),
and the core's prefix-subset evictor decides what goes.

Mamba / linear-attention hybrids add the state type: a node holds the recurrent state after its last
token where a request left one (a checkpoint). States are checkpointed where sglang's no_buffer strategy
keeps them: a copy when a request's prefill (or a chunk of it) ends, and the request's own state, handed
over, when it finishes. A hit ends at the last state at or before the full-attention match (the core's
Mamba policy); the matched state is copied into the request's own slot before its prefill runs
(sglang's deferred copy-on-write). The evictor drops states independently of attention pages.

What sglang calls a node is a core `Node`; a miss answers the key root of the empty extra key, which
this cache keeps locked so that it is never removed (`root_node`). The tree is the core request
manager's (`JengaBuffer.manager`): inserts go through its `cache_pages`, evictions through its
`evict_until` / `make_room`, and a request's record is closed when sglang releases its row
(`on_release`). Types reach this cache by their sglang role (adapter/types.py): slots of the tokens
type (full attention) are the values sglang keeps in `req_to_token`; the slot of the paired type
(sliding window) paired with a tokens slot is found through the allocator's
`full_to_swa_index_mapping`, which this cache keeps in step with the tree (after inserts that adopt
or free pages, and after every eviction, as the manager's `on_evict` listener).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch

from sglang_jenga.adapter.allocator import make_room
from sglang_jenga.adapter.buffer import JengaBuffer, rows_per_page
from sglang_jenga.adapter.compat import is_plain_decode, sglang_classes, swa_release_interval, swa_release_rule
from sglang_jenga.core import EvictResult, LockHandle, Node, TypedRadixTree
from sglang_jenga.core.specs import ceil_div

_sgl: Any = sglang_classes()  # sglang's classes, resolved at run time
# Test aid (tests/server/test_recall.py): with this variable set to 1, every prefix hit's full-attention KV is
# zeroed as it is matched, as if the manager had let those pages be overwritten while cached. A recall-trained
# model then answers wrongly from cached documents: the recall checks are shown to be able to fail.
SCRUB_HITS_ENV = "SGLANG_JENGA_TEST_SCRUB_HITS"
# How far a request's length (Req.seqlen) may run ahead of its decode batch's seq_len when the window release is
# tested (JengaRadixCache.release_windows): one token (the last one sampled, not in the KV yet), plus one of margin.
WINDOW_SLACK = 2


class JengaRadixCache(_sgl.BasePrefixCache):
    """Prefix cache over `TypedRadixTree`, with the layout's types in their sglang roles: `full_type` (tokens),
    `swa_type` (paired), `cross_type` (encoder), `state_type` (state); None where the model has none."""

    def __init__(self, params: Any, jenga: JengaBuffer) -> None:
        if params.page_size != jenga.page_size:
            raise ValueError(f"page size {params.page_size} != the jenga layout's {jenga.page_size}")
        self.disable = params.disable
        self.req_to_token_pool = params.req_to_token_pool
        self.token_to_kv_pool_allocator = params.token_to_kv_pool_allocator
        self.page_size = jenga.page_size  # tokens per small page: keys are matched and inserted in whole pages
        self.jenga = jenga
        types = jenga.types
        self.full_type, self.swa_type, self.cross_type, self.state_type = (
            types.tokens, types.paired, types.encoder, types.state)
        self._kv_encoder_len: dict[int, int] = {}  # id(req.kv) -> encoder tokens at the row's start
        self._window_due: dict[int, int] = {}  # row -> length from which its window release can be due
        self._window_interval = swa_release_interval(self) if types.paired else None  # None: sglang's loop runs
        self.sliding_window_size = params.sliding_window_size if self.swa_type else None
        self.draft_swa_window = params.draft_swa_window
        if self.draft_swa_window > (self.sliding_window_size or 0):
            raise ValueError(f"--memory-manager jenga: the draft model reads {self.draft_swa_window} sliding-window "
                             f"tokens, more than the target's window {self.sliding_window_size} that jenga keeps; "
                             "use another draft or --memory-manager default")
        self._scrub_hits = os.environ.get(SCRUB_HITS_ENV) == "1"
        jenga.on_reset.append(self.reset)
        self.reset()

    # -- structure ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop every cached page (back to the allocator) and start an empty tree."""
        manager = self.jenga.manager
        if self._after_evict not in manager.on_evict:
            manager.on_evict.append(self._after_evict)
        manager.reset_tree()
        self.pages_evicted = dict.fromkeys(self.tree.names, 0)
        # each type's position in the tree's per-type lists and its rows (sglang slots) per page
        self._sizes = {name: (t, rows_per_page(self.jenga.layout, name)) for t, name in enumerate(self.tree.names)}
        self._full = self._sizes[self.full_type][0]
        self._cross = self._sizes[self.cross_type][0] if self.cross_type else -1
        self._locks: dict[int, list[LockHandle]] = {}
        self.root_node = self.tree.key_root(None)
        self._root_lock = self.tree.lock(self.root_node)  # kept: the miss answer is never removed

    @property
    def tree(self) -> TypedRadixTree:
        return self.jenga.manager.tree

    def is_root(self, node: Any) -> bool:
        return bool(node.is_root)

    def supports_swa(self) -> bool:
        return self.swa_type is not None

    def supports_prefix_sharing(self) -> bool:
        return not self.disable

    def supports_mamba(self) -> bool:
        return self.state_type is not None

    # -- keys -----------------------------------------------------------------------------------
    # An encoder-decoder request's row starts with its encoder (image) tokens, whose token ids are
    # sglang's per-image pad values. The core tree keys them as part of the extra key: the image's
    # cross-attention pages live on that key's root, the text tokens form the radix path below it.
    def encoder_len(self, req: Any) -> int:
        """Encoder tokens at the start of `req`'s row (0 for text-only requests and models)."""
        if not self.cross_type or req is None or req.multimodal_inputs is None:
            return 0
        return int(req.multimodal_inputs.num_image_tokens or 0)

    def note_request(self, req: Any) -> None:
        """Remember where `req`'s encoder tokens end, for frees that come by row position."""
        if self.cross_type:
            self._kv_encoder_len[id(req.kv)] = self.encoder_len(req)

    def on_release(self, req: Any, *, checkpointed: bool) -> None:
        """The request gives its row back (finished, aborted or retracted): a state slot it still holds
        was not handed to the tree, so it is freed."""
        self._kv_encoder_len.pop(id(req.kv), None)
        if self.state_type and req.kv.holds_mamba:
            self.req_to_token_pool.mamba_allocator.free(req.kv.mamba_pool_idx.reshape(1))
            req.kv.mamba_pool_idx = None
        self._window_due.pop(req.kv.req_pool_idx, None)
        self.jenga.close(req.kv.req_pool_idx)

    @staticmethod
    def _split_key(tokens: Any, extra: tuple[Any, ...], enc: int) -> tuple[Any, tuple[Any, ...]]:
        return (tokens[enc:], (*extra, tuple(tokens[:enc]))) if enc else (tokens, extra)

    # -- match ----------------------------------------------------------------------------------
    def match_prefix(self, params: Any) -> Any:
        key, enc = params.key, self.encoder_len(params.req)
        tokens = key.raw_token_ids()
        miss = _sgl.MatchResult(0, self.root_node, self.root_node, self.root_node)
        if self.disable or len(tokens) == 0 or len(tokens) < enc:
            return miss
        text, extra = self._split_key(tokens, _extra_key(key), enc)
        hit = self.tree.match(text[:len(text) // self.page_size * self.page_size], extra)
        if hit.node is None or (enc and not hit.pages[cast("str", self.cross_type)].pages):
            return miss
        if self.state_type and hit.hit_tokens and params.cow_mamba and not self._copy_on_write(params.req, hit):
            return miss
        if self._scrub_hits:
            self._scrub(self.jenga.to_slots(self.full_type, hit.pages[self.full_type].pages))
        return _sgl.MatchResult(enc + hit.hit_tokens, hit.node, hit.node, hit.node)

    def _scrub(self, slots: torch.Tensor) -> None:
        """Zero these full-attention slots' K and V in every layer (SCRUB_HITS_ENV)."""
        pool = self.token_to_kv_pool_allocator.get_kvcache()
        pool = getattr(pool, "full_kv_pool", pool)
        for buffers in (pool.k_buffer, pool.v_buffer):
            for layer in buffers:
                layer[slots] = 0

    def _copy_on_write(self, req: Any, hit: Any) -> bool:
        """Give `req` a state slot and mark the matched state to be copied into it before the prefill
        runs (sglang's deferred copy-on-write). False if no slot can be had (the hit is dropped)."""
        if not req.kv.holds_mamba:
            guard = self.tree.lock(hit.node)  # the source must survive the eviction that makes room
            try:
                slot = self.req_to_token_pool.mamba_allocator.alloc(1)
            finally:
                self.tree.unlock(guard)
            if slot is None:
                return False
            req.kv.mamba_pool_idx = slot[0]
        state = cast("str", self.state_type)
        req.kv.mamba_cow_src_index = self.jenga.to_slots(state, hit.pages[state].pages[-1:])
        req.kv.mamba_needs_clear = False
        return True

    def touch_prefix(self, key: Any) -> None:
        tokens = key.raw_token_ids()
        if not self.disable and len(tokens) and not self.cross_type:
            self.tree.match(tokens[:len(tokens) // self.page_size * self.page_size], _extra_key(key))

    def path_device_indices(self, node: Any) -> torch.Tensor:
        """Slots from the row's start to the end of `node`: the encoder's cross-attention slots (if
        any), then the full-attention slots of the text path."""
        # Full-attention pages are never tombstoned: a node that has lost them is gone.
        full = self.jenga.to_slots(self.full_type, cast("list[int]", self._path_pages(node, self._full)))
        if not self.cross_type or not node.root.req_pages[self._cross]:
            return full
        return torch.cat([self.jenga.to_slots(self.cross_type, node.root.req_pages[self._cross]), full])

    def _path_pages(self, node: Any, t: int, first: int = 0) -> list[int | None]:
        """Type t's page entries along the path to `node`'s end, from page position `first` on."""
        parts: list[list[int | None]] = []
        P = self.page_size
        while not node.is_root and node.end // P > first:
            start = node.start // P
            parts.append(node.pages[t][first - start:] if start < first else node.pages[t])
            node = node.parent
        return [p for part in reversed(parts) for p in part]

    # -- insert ---------------------------------------------------------------------------------
    def checkpoint(self, req: Any, *, up_to: int, **kwargs: Any) -> None:
        """Insert the request's KV for tokens [0, up_to) and repoint its row at the tree's pages.

        Tokens below `cache_protected_len` are the tree's already (the matched prefix): they are
        passed as the tree's own full pages with no sliding-window claim. The request's own tokens
        bring their full pages and, where the request has not released them, their SWA pages; the
        tree frees what it already had (duplicates) and adopts SWA pages into its tombstones. At
        page size P only whole pages go in (up_to rounded down to a multiple of P, as sglang's
        paged caches do): the partial page stays the request's.
        """
        enc = self.encoder_len(req)
        up_to -= (up_to - enc) % self.page_size
        if self.disable or up_to < enc or up_to == 0:
            return  # a state slot the request still holds is freed by on_release
        kv, tokens = req.kv, req.full_untruncated_fill_ids[:up_to]
        n, protected = len(tokens), kv.cache_protected_len
        text, extra = self._split_key(tokens, _extra_key_of(req), enc)
        below = self._locked_prefix(req, protected, n, extra) if not enc else None
        first = protected if below is not None else 0  # the row's positions handed in: from its locked prefix on
        text = text[first:]
        row = self.req_to_token_pool.req_to_token[kv.req_pool_idx, first:n].to(torch.int64)
        pages: dict[str, list[int | None]] = {self.full_type: list(self.jenga.to_pages(self.full_type, row[enc:]))}
        if enc:
            pages[cast("str", self.cross_type)] = list(self.jenga.to_pages(cast("str", self.cross_type), row[:enc]))
        if self.swa_type:
            pages[self.swa_type] = self._request_swa_pages(kv, row, first, protected)
        if self.state_type:
            state: list[int | None] = [None] * (len(text) - 1)
            pages[self.state_type] = [*state, self._checkpoint_state(req)]
        result = self.jenga.manager.cache_pages(text, pages, extra, below=below)
        self._after_free(result.duplicates_freed)
        if any(result.duplicates_freed.get(name) for name in (self.full_type, self.cross_type) if name):
            # The tree had some of these positions already: the row takes its pages, paired with its SWA pages.
            # Otherwise the tree adopted the row's own pages and their pairs as they are.
            # Only positions [protected, n) change: with no encoder, the path's pages from there on.
            tail = (self.path_device_indices(result.node)[protected:] if enc else
                    self.jenga.to_slots(self.full_type, cast("list[int]", self._path_pages(
                        result.node, self._full, protected // self.page_size))))
            assert len(tail) == n - protected, (len(tail), n, protected)
            if self.swa_type:
                self._repair_mapping(result.node, tail, protected)
            self.req_to_token_pool.write((kv.req_pool_idx, slice(protected, n)), tail.to(torch.int32))
        kv.cache_protected_len = n
        kv.cache_inserted_len = max(kv.cache_inserted_len, n)
        if req.finished():
            # sglang's release_kv_cache, the only caller for a finished request, unlocks req.lock right after
            # (checkpoint_kv_cache refuses finished requests): moving the lock down first would be walked for nothing.
            req.last_node = result.node
            return
        self.unlock(req.lock)
        req.lock = self.lock(result.node)
        if self.state_type:
            # The running request computes on from its own state: the checkpoint just kept is for later
            # hits only, so it stays evictable (sglang's default keeps it locked until the request ends).
            self.tree.release_type(req.lock.receipt, self.state_type)
        req.last_node = result.node

    def _checkpoint_state(self, req: Any) -> int | None:
        """The state page to keep at the end of the request's tokens: a finished request hands its own
        slot over; a running one gets its state copied to a new page (None if no page can be had)."""
        kv, slots, state = req.kv, self.req_to_token_pool.mamba_allocator, cast("str", self.state_type)
        if not kv.holds_mamba:
            return None
        if req.finished():
            own = kv.mamba_pool_idx.reshape(1)
            kv.mamba_pool_idx = None  # the tree owns it now (and frees it if it already has one there)
            return self.jenga.to_pages(state, own)[0]
        copy = slots.alloc(1, kv.req_pool_idx)
        if copy is None:
            return None
        self.req_to_token_pool.mamba_pool.copy_from(kv.mamba_pool_idx.reshape(1), copy)
        return self.jenga.to_pages(state, copy)[0]

    def free_kv_row(self, kv: Any, ranges: list[tuple[int, int]]) -> None:
        """Free row ranges; encoder positions go back as cross-attention slots, the rest as usual."""
        enc = self._kv_encoder_len.get(id(kv), 0)
        if not enc:
            return super().free_kv_row(kv, ranges)
        row = self.req_to_token_pool.req_to_token[kv.req_pool_idx]
        cross = [row[lo:min(hi, enc)] for lo, hi in ranges if lo < enc]
        if cross:
            self.token_to_kv_pool_allocator.free_encoder(torch.cat(cross).long())
        text = [(max(lo, enc), hi) for lo, hi in ranges if hi > enc]
        if text:
            super().free_kv_row(kv, text)

    def _locked_prefix(self, req: Any, protected: int, n: int, extra: tuple[Any, ...]) -> Node | None:
        """The node the request holds locked at the end of its protected prefix, if its lock is there (then
        the checkpoint inserts only the tokens after it); None otherwise, and when nothing is new."""
        lock = req.lock
        if lock is None or lock.receipt is None or not protected < n:
            return None
        node = lock.node
        return node if node.end == protected and node.extra_key == extra and not node.is_root else None

    def _request_swa_pages(self, kv: Any, row: torch.Tensor, first: int, protected: int) -> list[int | None]:
        """SWA page per page position of `row` (the row's positions from `first` on): None below `protected`
        (the tree's) and where the request released its own (below its SWA eviction cursor: unpaired); else the
        page paired with the full page's first slot."""
        P = self.page_size
        lo = max(protected, kv.get_evicted_seqlen(_sgl.ComponentType.SWA)) // P * P
        swa = self.token_to_kv_pool_allocator.full_to_swa_index_mapping[row[lo - first::P]].tolist()
        k = self.jenga.layout.type(cast("str", self.swa_type)).pages_per_large  # slot // P - k: the core page
        own: list[int | None] = [None] * ((lo - first) // P)
        own += [s // P - k if s > 0 else None for s in swa]
        return own

    def _repair_mapping(self, node: Node, full: torch.Tensor, protected: int) -> None:
        """Pair each new full slot of the request's row (`full`: its slots from position `protected` on) with the
        SWA page the tree holds there."""
        swa_type = cast("str", self.swa_type)
        swa = self._path_pages(node, self._sizes[swa_type][0], protected // self.page_size)
        live = [p for p in swa if p is not None]
        if not live:
            return
        if len(live) < len(swa):  # tombstoned positions keep no pair
            alive = np.repeat(np.fromiter((p is not None for p in swa), dtype=bool, count=len(swa)), self.page_size)
            full = full[torch.from_numpy(alive).to(full.device)]
        self.token_to_kv_pool_allocator.set_full_to_swa_mapping(full, self.jenga.to_slots(swa_type, live))

    def _after_evict(self, result: EvictResult) -> None:
        """The manager evicted these pages: count them and unpair their slots."""
        for name, evicted in result.pages.items():
            self.pages_evicted[name] += len(evicted)
        self._after_free(result.pages)

    def _after_free(self, pages: Mapping[str, list[int]]) -> None:
        """The tree freed these core pages (eviction, duplicates): unpair their sliding-window slots."""
        if self.swa_type and pages:
            self.token_to_kv_pool_allocator.on_tree_freed(pages)

    # -- locks ----------------------------------------------------------------------------------
    def lock(self, node: Any) -> Any:
        return _sgl.TreeLock(node, self.tree.lock(node))

    def unlock(self, lock: Any) -> None:
        if lock is not None and lock.receipt is not None:
            self.tree.unlock(lock.receipt)

    def release_windows(self, batch: Any) -> bool:
        """sglang's `ScheduleBatch.maybe_evict_swa` for a decode batch, whose loop tests every request every step
        (~2 µs each between two CPU forwards) though a request is due once every SGLANG_SWA_EVICTION_INTERVAL
        tokens. Here sglang's own test and release (`swa_release_rule`) run only for the requests that can be
        due: a request is due at a length of at least cursor + window + interval + 1 (sglang's rule), and
        `_window_due[row]` keeps that bound from the cursor read the last time the row's request was tested
        (none yet: 0), so a request is skipped only while its length, at most its batch seq_len + `WINDOW_SLACK`,
        is below it. Cursors only grow while a request holds its row (a new request or a retraction goes through
        `on_release`, which drops the bound); were one moved back in place, its release would come later than
        sglang's, never earlier. Returns False, doing nothing, where sglang's loop does more than that (then it
        runs as is)."""
        interval = self._window_interval
        if interval is None or not is_plain_decode(batch):
            return False
        due_at, slack = self._window_due, WINDOW_SLACK
        rows, lens = batch.req_pool_indices_cpu.tolist(), batch.seq_lens_cpu.tolist()
        maybe = [i for i, (row, n) in enumerate(zip(rows, lens, strict=True)) if n + slack >= due_at.get(row, 0)]
        if not maybe:
            return True
        rule, reqs, ahead = swa_release_rule(batch, interval), batch.reqs, self.swa_retain_window + interval + 1
        due = [reqs[i] for i in maybe if rule.due(reqs[i])]
        if due:
            allocator = self.token_to_kv_pool_allocator
            allocator.free_group_begin()
            try:
                for req in due:
                    rule.release(req)
            finally:
                allocator.free_group_end()
        for i in maybe:
            due_at[rows[i]] = rule.cursor(reqs[i]) + ahead
        return True

    def evict_sliding_windows(self, req: Any, pre_len: int, *, eviction_interval: int = 1) -> None:
        """Release the request's own out-of-window SWA slots (sglang's rule), and once its window has
        moved past the cached prefix it was matched on, drop its SWA lock on that prefix so the tree
        can evict those pages while the request keeps decoding."""
        super().evict_sliding_windows(req, pre_len, eviction_interval=eviction_interval)
        lock = req.lock
        if lock is None or lock.receipt is None or lock.swa_released:
            return
        if pre_len - self.swa_retain_window >= lock.node.end:
            self.tree.release_type(lock.receipt, cast("str", self.swa_type))
            lock.swa_released = True

    def inc_lock_ref(self, node: Any) -> Any:
        self._locks.setdefault(id(node), []).append(self.tree.lock(node))
        return _sgl.IncLockRefResult(delta=0)

    def dec_lock_ref(self, node: Any, params: Any = None) -> Any:
        self.tree.unlock(self._locks[id(node)].pop())
        return _sgl.DecLockRefResult(delta=0)

    # -- eviction -------------------------------------------------------------------------------
    def evict(self, params: Any) -> Any:
        """Free at least `num_tokens` full and `swa_num_tokens` sliding-window pages, and enough to
        allocate `mamba_num` more state slots than are free now (or all it can)."""
        P = self.page_size
        want = {self._full: ceil_div(params.num_tokens, P)}
        if self.swa_type:
            want[self._sizes[self.swa_type][0]] = ceil_div(params.swa_num_tokens, P)
        states: dict[str, int] = {}
        if self.state_type and params.mamba_num > 0:
            states[self.state_type] = params.mamba_num + self.jenga.allocator.of(self.state_type).available()
        manager = self.jenga.manager
        result = manager.evict_until(lambda freed: all(freed[t] >= n for t, n in want.items())
                                     and (not states or manager.fits(states)))
        def freed(name: str | None) -> int:  # tokens (P per page) of a token type, pages of the state type
            return len(result.pages.get(name, ())) * self._sizes[name][1] if name else 0

        return _sgl.EvictResult(num_tokens_evicted=freed(self.full_type), swa_num_tokens_evicted=freed(self.swa_type),
                                mamba_num_evicted=freed(self.state_type))

    def evict_until_allocatable(self, demand: Mapping[str, int]) -> None:
        """Evict until the allocator can hand out `demand` (pages per type) at once."""
        make_room(self.jenga, demand)

    # -- sizes ----------------------------------------------------------------------------------
    def _cached(self, name: str | None) -> tuple[int, int]:
        """(cached, locked) slots of type `name` in the tree (tokens: P per page); (0, 0) for a role the model
        lacks (None)."""
        if name is None:
            return 0, 0
        t, rows = self._sizes[name]
        return self.tree.cached_pages[t] * rows, self.tree.locked_pages[t] * rows

    def _evictable(self, name: str | None) -> int:
        cached, locked = self._cached(name)
        return cached - locked

    def evictable_size(self) -> int:
        return self._evictable(self.full_type) + self._cross_evictable_equiv()

    def protected_size(self) -> int:
        return self._cached(self.full_type)[1] + self._cross_held_equiv() - self._cross_evictable_equiv()

    # Encoder-decoder models: sglang counts tokens, and the allocator reports capacity in
    # full-attention tokens, so cross-attention pages are counted as the full-attention slots of the
    # large pages they occupy (exact when idle, conservative for what eviction can free).
    def _cross_held_equiv(self) -> int:
        if not self.cross_type:
            return 0
        carved = self.jenga.allocator.of(self.cross_type).stats().large_pages_carved
        return carved * self.jenga.layout.type(self.full_type).pages_per_large

    def _cross_evictable_equiv(self) -> int:
        if not self.cross_type:
            return 0
        per_large = self.jenga.layout.type(self.cross_type).pages_per_large
        return self._evictable(self.cross_type) // per_large * self.jenga.layout.type(self.full_type).pages_per_large

    full_evictable_size = evictable_size
    full_protected_size = protected_size

    def swa_evictable_size(self) -> int:
        return self._evictable(self.swa_type)

    def swa_protected_size(self) -> int:
        return self._cached(self.swa_type)[1]

    def mamba_evictable_size(self) -> int:
        return self._evictable(self.state_type)

    def mamba_protected_size(self) -> int:
        return self._cached(self.state_type)[1]

    def total_size(self) -> int:
        return self._cached(self.full_type)[0]

    def dfs_weight_order(self, node_handles: Any) -> list[int]:
        """Requests in arrival order (the core tree has no sglang-style DFS weights)."""
        return list(range(len(node_handles)))

    def sanity_check(self) -> None:
        self.jenga.manager.check_integrity()

    def pretty_print(self) -> None:
        stats = self.tree.stats()
        print(f"jenga tree: {stats.num_nodes} nodes, cached pages {stats.cached_pages}, "
              f"locked pages {stats.locked_pages}")


def _extra_key(key: Any) -> tuple[Any, ...]:
    return (key.extra_key, key.cache_salt)


def _extra_key_of(req: Any) -> tuple[Any, ...]:
    return (req.extra_key, req.cache_salt or None)
