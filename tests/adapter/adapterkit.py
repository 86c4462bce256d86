"""Shared helpers for the adapter tests: jenga's sglang classes built on the CPU, driven with real sglang `Req`s
through the functions sglang's scheduler calls (no server, no model). conftest.py imports sglang first.

A rig is one tiny model of a family ("swa": full + sliding window, "cross": full + cross-attention, "mamba":
full + Mamba state) in one `JengaBuffer`, with the pools, allocator, req_to_token pool and `JengaRadixCache`
built as `adapter/build.py` builds them. The drivers follow the scheduler (see bench/sglang_manager.py):

  admit         `Req.init_next_round_input` (match, Mamba copy-on-write), `tree_cache.lock(req.last_node)`.
  alloc_extend  one prefill batch, as `allocation.alloc_for_extend` under the plugin's hook: the plan (one
                `PlannedAlloc` per request, rows read when the slots are taken), `alloc_req_slots`,
                `alloc_token_slots` (evict + one flat `allocator.alloc`), the row writes, then the forward's
                deferred Mamba copy-on-write.
  after_prefill `checkpoint_kv_cache` (every chunk) and the first output token; `extend` = both.
  decode        one decode step, as `alloc_for_decode` under the plugin's hook.
  slide         `tree_cache.evict_sliding_windows` in a free group (ScheduleBatch.maybe_evict_swa).
  finish        `release_kv_cache(checkpoint=True)`; `retract` (also abort): `release_kv_cache(checkpoint=False)`.
  evict, flush  `tree_cache.evict`; the scheduler's flush_cache (tree reset, req_to_token and allocator clear).

Geometry: 1 kv head x head_dim 2 in bf16, so a token costs 8 B per attention layer; the layer counts below set
how many small pages of each type a large page holds (the numbers the tests assert on).
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from sglang.srt.configs.mamba_utils import Mamba2CacheParams, Mamba2StateShape
from sglang.srt.environ import envs
from sglang.srt.managers.schedule_batch import FINISH_LENGTH, MultimodalInputs, Req
from sglang.srt.mem_cache.allocation import (
    alloc_paged_token_slots_decode,
    alloc_paged_token_slots_extend,
    alloc_req_slots,
    alloc_token_slots,
)
from sglang.srt.mem_cache.base_prefix_cache import EvictParams
from sglang.srt.mem_cache.cache_init_params import CacheInitParams
from sglang.srt.mem_cache.common import checkpoint_kv_cache, release_kv_cache
from sglang.srt.mem_cache.memory_pool import ReqToTokenPool
from sglang.srt.sampling.sampling_params import SamplingParams

from sglang_jenga.adapter.buffer import SHARED, JengaBuffer, PlannedAlloc
from sglang_jenga.adapter.build import LayerGroup, ModelLayers, build_pools, build_state_pools
from sglang_jenga.adapter.mamba import state_entry_bytes
from sglang_jenga.adapter.tree_cache import JengaRadixCache
from sglang_jenga.core import (
    CrossAttentionSpec,
    FullAttentionSpec,
    LayerSpec,
    MambaSpec,
    SlidingWindowSpec,
    plan_layout,
)

DTYPE = torch.bfloat16
HEADS, HEAD_DIM = 1, 2
GEO = {"kv_heads": HEADS, "head_dim": HEAD_DIM, "dtype_bytes": 2}  # K+V = 8 B per token per layer
FAMILIES = ("swa", "cross", "mamba")
MAX_CONTEXT = 96
MAMBA = "mamba"  # MambaSpec's type name
IMAGE_PAD = 1 << 40  # token id of an image's pad tokens (sglang pads each image with one value)


class _Complaints(logging.Handler):
    """Collects the adapter's warnings: a row released with pages still its own, a leak found at clear.
    Both are repaired on the spot (so nothing else would notice); `_assert_integrity` fails on them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


COMPLAINTS = _Complaints()
logging.getLogger("sglang_jenga.adapter").addHandler(COMPLAINTS)


@dataclass
class Rig:
    """One tiny model's jenga pools, as a server builds them (adapter/build.py)."""

    family: str
    jenga: JengaBuffer
    req_pool: Any
    allocator: Any
    cache: JengaRadixCache
    window: int | None = None
    encoder_tokens: int = 0
    next_rid: int = 0

    @property
    def manager(self) -> Any:
        return self.jenga.manager

    def per_large(self, name: str) -> int:
        return self.jenga.layout.type(name).pages_per_large


# ----------------------------------------------------------------------------------------------------- builders
# The pools come from adapter/build.py's own builders (`build_pools`, `build_state_pools`), as a server builds
# them, over a `ModelLayers` written here instead of read off sglang's configurator.
def _make_layers(*groups: tuple[LayerSpec, Sequence[int]], mamba_params: Any = None) -> ModelLayers:
    """The layers of a model with these groups, all on one stage."""
    stage = range(max(i for _, ids in groups for i in ids) + 1)
    return ModelLayers(tuple(LayerGroup(spec, tuple(ids)) for spec, ids in groups), HEADS, HEAD_DIM, DTYPE,
                       stage, (stage,), mamba_params)


def _make_buffer(layers: ModelLayers, num_large: int, page_size: int = 1) -> JengaBuffer:
    return JengaBuffer(plan_layout(layers.model_spec("tiny"), page_size), num_large, "cpu", layers.stage_layers(),
                       draft_layers=layers.draft)


def _make_rig_of(family: str, layers: ModelLayers, num_large: int, req_slots: int, window: int | None = None,
                 encoder_tokens: int = 0, page_size: int = 1) -> Rig:
    """The rig of a model without a state type, its pools by build.POOLS, at sglang's --page-size `page_size`."""
    jenga = _make_buffer(layers, num_large, page_size)
    pools = build_pools(jenga, layers, "cpu")
    return _make_cache(family, jenga, _make_req_pool(req_slots), pools.allocator, window, encoder_tokens)


def _make_cache(family: str, jenga: JengaBuffer, req_pool: Any, allocator: Any, window: int | None = None,
                encoder_tokens: int = 0) -> Rig:
    params = CacheInitParams(disable=False, req_to_token_pool=req_pool, token_to_kv_pool_allocator=allocator,
                             page_size=jenga.page_size, sliding_window_size=window)
    cache = JengaRadixCache(params, jenga)
    return Rig(family, jenga, req_pool, allocator, cache, window, encoder_tokens)


def _make_req_pool(req_slots: int) -> ReqToTokenPool:
    return ReqToTokenPool(size=req_slots, max_context_len=MAX_CONTEXT, device="cpu", enable_memory_saver=False)


def _make_swa(num_large: int = 32, window: int = 4, req_slots: int = 8, page_size: int = 1) -> Rig:
    """Full attention (3 layers, 24 B/token) + sliding window `window` (4 layers, 32 B/token): a large page
    (96 B x `page_size`) holds 4 full or 3 SWA pages."""
    layers = _make_layers((FullAttentionSpec(**GEO), [0, 2, 4]),
                          (SlidingWindowSpec(window=window, **GEO), [1, 3, 5, 6]))
    return _make_rig_of("swa", layers, num_large, req_slots, window=window, page_size=page_size)


def _make_full(num_large: int = 32, req_slots: int = 8, page_size: int = 1) -> Rig:
    """Full attention only (2 layers, 16 B/token): a small page is a whole large page."""
    layers = _make_layers((FullAttentionSpec(**GEO), [0, 1]))
    return _make_rig_of("full", layers, num_large, req_slots, page_size=page_size)


def _make_cross(num_large: int = 32, encoder_tokens: int = 4, req_slots: int = 8) -> Rig:
    """Full attention (4 layers, 32 B/token) + cross-attention over up to `encoder_tokens` image tokens
    (3 layers, 24 B/token): a 96 B large page holds 3 full or 4 cross pages."""
    layers = _make_layers((FullAttentionSpec(**GEO), [0, 1, 3, 5]),
                          (CrossAttentionSpec(encoder_tokens=encoder_tokens, **GEO), [2, 4, 6]))
    return _make_rig_of("cross", layers, num_large, req_slots, encoder_tokens=encoder_tokens)


def _mamba_params() -> Mamba2CacheParams:
    """The minimal Mamba2 state of bench/sgl_build.build_mamba (conv 20 x 1, SSM 2 x 8 x 2, bf16)."""
    with envs.SGLANG_MAMBA_SSM_DTYPE.override("bfloat16"):
        shape = Mamba2StateShape.create(tp_world_size=1, intermediate_size=16, n_groups=1, num_heads=2,
                                        head_dim=8, state_size=2, conv_kernel=2)
        return Mamba2CacheParams(shape=shape, layers=[0])


def _make_mamba(num_large: int = 32, req_slots: int = 8) -> Rig:
    """Full attention (1 layer, 8 B/token) + one Mamba2 layer whose state is sglang's envelope entry: the large
    page is the LCM of the two (printed by the tests that need it)."""
    params = _mamba_params()
    state = state_entry_bytes(params, 1)
    layers = _make_layers((FullAttentionSpec(**GEO), [1]), (MambaSpec(state_bytes_per_layer=state), [0]),
                          mamba_params=params)
    jenga = _make_buffer(layers, num_large)
    req_pool, pools = build_state_pools(jenga, layers, "cpu", max_reqs=req_slots, max_context_len=MAX_CONTEXT,
                                        overlap=False)
    return _make_cache("mamba", jenga, req_pool, pools.allocator)


def _make_rig(family: str, **kwargs: Any) -> Rig:
    return {"swa": _make_swa, "full": _make_full, "cross": _make_cross, "mamba": _make_mamba}[family](**kwargs)


def _make_req(rig: Rig, tokens: Sequence[int], image: int | None = None) -> Req:
    """A sglang `Req` for `tokens`; with `image` (cross rigs), the row starts with the image's
    `rig.encoder_tokens` pad tokens (pad value IMAGE_PAD + image) and the request carries their count."""
    rig.next_rid += 1
    enc = rig.encoder_tokens if image is not None else 0
    ids = [IMAGE_PAD + (image or 0)] * enc + list(tokens)
    req = Req(rid=f"r{rig.next_rid}", origin_input_text="", origin_input_ids=array("q", ids),
              sampling_params=SamplingParams(temperature=0, max_new_tokens=1 << 20))
    if enc:
        req.multimodal_inputs = MultimodalInputs(mm_items=[], num_image_tokens=enc)
    return req


# ------------------------------------------------------------------------------------------------------ drivers
def next_token(req: Req) -> int:
    """The token a step 'samples' (deterministic: a function of the row length)."""
    return 1000 + len(req.origin_input_ids) + len(req.output_ids)


def admit(rig: Rig, req: Req) -> int:
    """Match (with Mamba copy-on-write) and lock the hit; returns the cached tokens (sglang's prefix_len)."""
    req.init_next_round_input(rig.cache)
    req.lock = rig.cache.lock(req.last_node)
    return int(req.prefix_len)


def extend(rig: Rig, batch: Sequence[tuple[Req, int]]) -> torch.Tensor:
    """One prefill batch: each request extends its row [prefix_len, end), then its result is processed as
    a running request's (checkpoint, and its first output token once its prompt is done). Returns the flat
    slots."""
    locs = alloc_extend(rig, batch)
    for r, _ in batch:
        after_prefill(rig, r)
    return locs


def alloc_extend(rig: Rig, batch: Sequence[tuple[Req, int]]) -> torch.Tensor:
    """`alloc_for_extend` under the plugin's hook: the plan, `alloc_req_slots`, `alloc_token_slots` (evict +
    one flat `allocator.alloc`), the row writes. Raises RuntimeError (sglang's out-of-memory) if the batch
    does not fit, after the rows were taken."""
    jenga, cache, req_pool = rig.jenga, rig.cache, rig.req_pool
    reqs = [r for r, _ in batch]
    prefix = [_prefix_slots(rig, r) for r in reqs]
    parts = []
    for r, end in batch:  # plugin._alloc_for_extend
        cache.note_request(r)
        enc = cache.encoder_len(r)
        cross = enc if r.prefix_len < enc else 0
        parts.append((r, cross, end - r.prefix_len - cross, max(0, r.prefix_len - enc)))
    jenga.plan(lambda: [PlannedAlloc(r.kv.req_pool_idx, c, t, s) for r, c, t, s in parts])
    try:
        alloc_req_slots(req_pool, reqs, cache)
        num_tokens = sum(end - r.prefix_len for r, end in batch)
        if jenga.page_size == 1:
            locs = alloc_token_slots(cache, num_tokens)
        else:  # alloc_for_extend's paged branch: last_loc is each row's last prefix slot
            last = torch.tensor([int(p[-1]) if len(p) else -1 for p in prefix], dtype=torch.int64)
            pre = torch.tensor([r.prefix_len for r in reqs], dtype=torch.int64)
            seq = torch.tensor([end for _, end in batch], dtype=torch.int64)
            locs = alloc_paged_token_slots_extend(cache, pre, pre, seq, seq, last, num_tokens)
    finally:
        jenga.plan(None)
    at = 0
    for (r, end), pre in zip(batch, prefix, strict=True):  # write_cache_indices, host path
        row, n = r.kv.req_pool_idx, end - r.prefix_len
        req_pool.write((row, slice(0, r.prefix_len)), pre.to(torch.int32))
        req_pool.write((row, slice(r.prefix_len, end)), locs[at:at + n].to(torch.int32))
        at += n
        r.kv.kv_allocated_len = r.kv.kv_committed_len = end
        r.extend_end = end
    _copy_matched_states(rig, reqs)
    return locs


def _copy_matched_states(rig: Rig, reqs: Sequence[Req]) -> None:
    """The deferred Mamba copy-on-write the forward runs (ScheduleBatch._collect_deferred_mamba_cow_and_clear):
    the matched state, which must still be the tree's (locked through the batch's evictions), into the
    request's own slot."""
    for r in reqs:
        src = r.kv.mamba_cow_src_index
        if src is None:
            continue
        page = rig.jenga.to_pages(MAMBA, src)[0]
        assert rig.manager.allocator.of(MAMBA).is_used(page) and page not in rig.manager.held_pages()[MAMBA], \
            f"{r.rid}: the matched state {page} is no longer cached"
        rig.req_pool.mamba_pool.copy_from(src, r.kv.mamba_pool_idx.reshape(1))
        r.kv.mamba_cow_src_index = None
        r.kv.mamba_needs_clear = False


def after_prefill(rig: Rig, req: Req) -> None:
    """process_batch_result_prefill for a request that goes on running: checkpoint (every chunk), and the
    first output token once the prompt is done."""
    checkpoint_kv_cache(req, rig.cache)
    if req.extend_end == len(req.origin_input_ids):
        req.output_ids.append(next_token(req))


def _prefix_slots(rig: Rig, req: Req) -> torch.Tensor:
    """allocation._prefix_kv_indices: a request holding its row has its prefix there; a new one reads its
    match off the tree."""
    if req.kv.holds_kv:
        return rig.req_pool.req_to_token[req.kv.req_pool_idx, :req.prefix_len].to(torch.int64)
    if req.prefix_len == 0:
        return torch.empty(0, dtype=torch.int64)
    return rig.cache.prefix_device_indices(req)


def decode(rig: Rig, reqs: Sequence[Req]) -> torch.Tensor:
    """One decode step for `reqs` (alloc_for_decode under the plugin's hook); returns the batch's slots."""
    jenga, enc = rig.jenga, rig.cache.encoder_len
    jenga.plan(lambda: [PlannedAlloc(r.kv.req_pool_idx, 0, 1, r.kv.kv_allocated_len - enc(r)) for r in reqs],
               lambda: [r.kv.req_pool_idx for r in reqs])
    rows = torch.tensor([r.kv.req_pool_idx for r in reqs], dtype=torch.int64)
    cols = torch.tensor([r.kv.kv_committed_len for r in reqs], dtype=torch.int64)
    try:
        if jenga.page_size == 1:
            locs = alloc_token_slots(rig.cache, len(reqs))
        else:  # alloc_for_decode_default's paged branch
            last = rig.req_pool.req_to_token[rows, cols - 1].to(torch.int64)
            locs = alloc_paged_token_slots_decode(rig.cache, cols + 1, cols + 1, last)
    finally:
        jenga.plan(None)
    rig.req_pool.write((rows, cols), locs.to(torch.int32))
    for r in reqs:
        r.kv.kv_allocated_len += 1
        r.kv.kv_committed_len += 1
        r.output_ids.append(next_token(r))
    return locs


def slide(rig: Rig, reqs: Sequence[Req]) -> None:
    """Release out-of-window SWA slots (ScheduleBatch.maybe_evict_swa in a decode batch, interval 1)."""
    rig.allocator.free_group_begin()
    for r in reqs:
        rig.cache.evict_sliding_windows(r, r.kv.kv_committed_len)
    rig.allocator.free_group_end()


def finish(rig: Rig, req: Req) -> None:
    """The request finished (also straight after its prefill, before any checkpoint: max_new_tokens 1)."""
    if len(req.output_ids) == 0:
        req.output_ids.append(next_token(req))
    req.finished_reason = FINISH_LENGTH(length=len(req.output_ids))
    release_kv_cache(req, rig.cache, checkpoint=True)


def retract(rig: Rig, req: Req) -> None:
    """Retraction and abort alike (ScheduleBatch.release_req, an abort after any chunk or straight after the
    prefill): give the row back without inserting."""
    release_kv_cache(req, rig.cache, checkpoint=False)


def evict(rig: Rig, full: int = 0, swa: int = 0, mamba: int = 0) -> Any:
    return rig.cache.evict(EvictParams(num_tokens=full, swa_num_tokens=swa, mamba_num=mamba))


def flush(rig: Rig) -> None:
    """Scheduler.flush_cache on an idle scheduler."""
    rig.cache.reset()
    rig.req_pool.clear()
    rig.allocator.clear()
    rig.req_pool.reset_aux_cache_allocator()


# -------------------------------------------------------------------------------------------------------- views
def row(rig: Rig, req: Req, lo: int = 0, hi: int | None = None) -> list[int]:
    """The request's req_to_token slots [lo, hi) (default: up to what it allocated)."""
    hi = req.kv.kv_allocated_len if hi is None else hi
    return rig.req_pool.req_to_token[req.kv.req_pool_idx, lo:hi].tolist()


def own_pages(rig: Rig, req: Req, name: str) -> list[int]:
    """Core pages of type `name` the manager records for the request (outside the tree)."""
    held = rig.manager.held(rig.jenga.rid(req.kv.req_pool_idx))
    return [p for p in held.pages[name] if p is not None]


def row_pages(rig: Rig, req: Req) -> dict[str, list[int]]:
    """Core pages of every type behind the request's row: full slots of its text positions, their SWA peers
    (unpaired ones left out), the cross-attention slots of its encoder positions, its state slot."""
    jenga, enc = rig.jenga, rig.cache.encoder_len(req)
    full, swa_type = jenga.types.tokens, jenga.types.paired
    out = {full: jenga.to_pages(full, _slots(row(rig, req, enc)))}
    if swa_type:
        swa = rig.allocator.full_to_swa_index_mapping[_slots(row(rig, req))]
        out[swa_type] = jenga.to_pages(swa_type, swa[swa > 0])
    if enc:
        out["cross"] = jenga.to_pages("cross", _slots(row(rig, req, 0, enc)))
    if req.kv.holds_mamba:
        out[MAMBA] = jenga.to_pages(MAMBA, req.kv.mamba_pool_idx.reshape(1))
    return out


def set_state(rig: Rig, req: Req, value: float) -> None:
    """Write `value` over the request's whole Mamba state (conv) and -`value` (SSM), as a forward would."""
    cache, slot = rig.req_pool.mamba_pool.mamba_cache, int(req.kv.mamba_pool_idx)
    for conv in cache.conv:
        conv[:, slot] = value
    cache.temporal[:, slot] = -value


def state_value(rig: Rig, req: Req) -> float:
    """The value `set_state` left in the request's slot (asserts the slot holds one such state)."""
    cache, slot = rig.req_pool.mamba_pool.mamba_cache, int(req.kv.mamba_pool_idx)
    conv = {float(x) for c in cache.conv for x in c[:, slot].unique()}
    temporal = {float(x) for x in cache.temporal[:, slot].unique()}
    assert len(conv) == 1 and temporal == {-x for x in conv}, (conv, temporal)
    return conv.pop()


def large_pages(rig: Rig, name: str, pages: Sequence[int]) -> set[int]:
    return {p // rig.per_large(name) for p in pages}


def swa_evicted(req: Req) -> int:
    """The request's SWA eviction cursor: its own SWA slots below it are freed."""
    from sglang.srt.mem_cache.unified_cache.components import ComponentType

    return int(req.kv.get_evicted_seqlen(ComponentType.SWA))


def _slots(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.int64)


# ----------------------------------------------------------------------------------------------------- asserts
def _assert_integrity(rig: Rig, running: Sequence[Req] = ()) -> None:
    """The manager's and the tree cache's integrity, then each running request's row against both (its tree
    part is its locked path's slots, its own part exactly the pages the manager records for it), the whole
    full -> SWA slot mapping (SWA models), every running state slot held once and no other page on the
    SHARED record."""
    assert not COMPLAINTS.records, COMPLAINTS.records
    rig.manager.check_integrity()
    rig.cache.sanity_check()
    for r in running:
        if r.kv.holds_kv:  # admitted requests hold no row yet
            _assert_row(rig, r)
    if rig.jenga.types.paired:
        _assert_swa_mapping(rig, running)
    if rig.family == "mamba":
        states = sorted(row_pages(rig, r)[MAMBA][0] for r in running if r.kv.holds_mamba)
        held = sorted(rig.manager.held_pages()[MAMBA])
        assert held == states, f"state slots held {held} != the running requests' {states}"
    shared = rig.manager.held(SHARED).pages if rig.manager.is_open(SHARED) else {}
    for name, pages in shared.items():
        if name != MAMBA:  # a copy-on-write slot is taken at match time, before the row (SHARED record)
            assert not [p for p in pages if p is not None], f"{name}: pages on the SHARED record"


def _assert_row(rig: Rig, r: Req) -> None:
    jenga, kv = rig.jenga, r.kv
    enc = rig.cache.encoder_len(r)
    protected, allocated = kv.cache_protected_len, kv.kv_allocated_len
    path = rig.cache.path_device_indices(r.lock.node).tolist()
    assert row(rig, r, 0, protected) == path[:protected], f"{r.rid}: row prefix is not the locked path"
    full = jenga.types.tokens
    own_full = jenga.to_pages(full, _slots(row(rig, r, max(protected, enc))))
    assert own_pages(rig, r, full) == own_full, f"{r.rid}: own full pages != row [{protected}, {allocated})"
    if jenga.types.paired:  # the window the next step reads is paired, tree part included
        window = row(rig, r, max(0, kv.kv_committed_len - (rig.window or 0)), kv.kv_committed_len)
        assert bool((rig.allocator.full_to_swa_index_mapping[_slots(window)] > 0).all()), f"{r.rid}: window"
    if enc and protected < enc:
        assert own_pages(rig, r, "cross") == row_pages(rig, r)["cross"], f"{r.rid}: own cross pages"


def _assert_swa_mapping(rig: Rig, running: Sequence[Req]) -> None:
    """`full_to_swa_index_mapping` slot by slot: a cached full page maps to the SWA page its node holds at
    that position (0 at a tombstone), a request's own full page to its own SWA page there (0 once
    released), a free full page to 0."""
    jenga, manager = rig.jenga, rig.manager
    full, swa = jenga.types.tokens, cast("str", jenga.types.paired)
    full_t, swa_t = manager.names.index(full), manager.names.index(swa)
    expected = [0] * (jenga.num_rows(full))

    def pair(fulls: Sequence[int | None], swas: Sequence[int | None]) -> None:
        for f, s in zip(fulls, swas, strict=True):
            if f is not None:
                peers = [0] * jenga.page_size if s is None else jenga.to_slots(swa, [s]).tolist()
                for slot, peer in zip(jenga.to_slots(full, [f]).tolist(), peers, strict=True):
                    expected[slot] = peer

    for node in manager.tree.iter_nodes():
        pair(node.pages[full_t], node.pages[swa_t])
    for r in running:
        if r.kv.holds_kv:
            held = manager.held(jenga.rid(r.kv.req_pool_idx)).pages
            pair(held[full], held[swa])
    assert rig.allocator.full_to_swa_index_mapping[:-1].tolist() == expected


def _assert_all_free(rig: Rig) -> None:
    """After a flush: every large page back in the common pool, no leak found by `JengaBuffer.clear` (which
    would have logged it and rebuilt the manager), nothing cached, every req_to_token row free."""
    assert not COMPLAINTS.records, COMPLAINTS.records
    manager = rig.manager
    assert manager.allocator.large_pages_free == manager.allocator.pool.total, manager.allocator.stats()
    for t in manager.allocator.stats().types:
        assert t.pages_used == 0, t
    assert manager.tree.cached_pages == [0] * len(manager.names)
    assert manager.open_requests() == [SHARED]
    assert rig.req_pool.available_size() == rig.req_pool.size
    manager.check_integrity()


def _assert_disjoint_large_pages(rig: Rig, a: Req, b: Req) -> None:
    """Request-aware placement: every type's pages behind the two rows sit in different large pages (small
    page id // pages per large page of the type)."""
    pa, pb = row_pages(rig, a), row_pages(rig, b)
    assert pa.keys() == pb.keys()
    for name in pa:
        la, lb = large_pages(rig, name, pa[name]), large_pages(rig, name, pb[name])
        assert la and lb and not la & lb, f"{name}: large pages {la} and {lb} shared"
