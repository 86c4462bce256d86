"""Jenga's sglang adapter driven through sglang's own functions (adapterkit), one request lifecycle per family
with exact numbers: chunked prefill with a checkpoint per chunk, a prefix hit that reuses the first request's
slots, decode, SWA window release, retraction, finish, eviction, flush. Integrity (manager, tree cache, every
running row against both) is checked after every step. Plus request-aware placement of one batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapterkit import (
    FAMILIES,
    MAMBA,
    _assert_all_free,
    _assert_disjoint_large_pages,
    _assert_integrity,
    _make_req,
    _make_rig,
    _make_swa,
    admit,
    after_prefill,
    alloc_extend,
    decode,
    evict,
    extend,
    finish,
    flush,
    large_pages,
    own_pages,
    retract,
    row,
    row_pages,
    set_state,
    slide,
    state_value,
    swa_evicted,
)

from sglang_jenga.adapter.buffer import PLACEMENT_ENV


def _sizes(rig) -> tuple[int, ...]:
    """(full cached, full evictable, full protected, SWA evictable, SWA protected) as sglang reads them."""
    c = rig.cache
    return (c.total_size(), c.full_evictable_size(), c.full_protected_size(), c.swa_evictable_size(),
            c.swa_protected_size())


def _used(rig) -> dict[str, int]:
    return {t.name: t.pages_used for t in rig.manager.allocator.stats().types}


def test_swa_lifecycle() -> None:
    """Window 4; a: 10 tokens in chunks of 6 + 4, b shares a's first 8 tokens."""
    rig = _make_swa(window=4)
    a = _make_req(rig, list(range(10)))
    assert admit(rig, a) == 0
    extend(rig, [(a, 6)])
    _assert_integrity(rig, [a])
    # 6 full + 6 SWA pages cached; a's lock holds the window a hit at 6 needs (tokens 2..5)
    assert (a.kv.cache_protected_len, _sizes(rig)) == (6, (6, 0, 6, 2, 4))
    extend(rig, [(a, 10)])
    _assert_integrity(rig, [a])
    assert _sizes(rig) == (10, 0, 10, 6, 4) and len(a.output_ids) == 1

    b = _make_req(rig, list(range(8)) + [50, 51])
    assert admit(rig, b) == 8  # full pages 0..7 and the SWA window 4..7
    assert rig.cache.prefix_device_indices(b).tolist() == row(rig, a, 0, 8)
    extend(rig, [(b, 10)])
    _assert_integrity(rig, [a, b])
    assert row(rig, b, 0, 8) == row(rig, a, 0, 8)
    # b's window is 6, 7, 50, 51; the branch at 8 pins its window 4..7: 8 SWA pages locked
    assert _sizes(rig) == (12, 0, 12, 4, 8)

    for _ in range(6):
        decode(rig, [a, b])
        _assert_integrity(rig, [a, b])
    assert _used(rig) == {"full": 24, "swa": 24}
    assert len(own_pages(rig, a, "swa")) == 6

    # a has computed 16 tokens: its own SWA slots of positions 10, 11 are out of the window and go back; its
    # window has left the cached prefix (ends at 10), so its SWA lock there goes too (tokens 8, 9 evictable)
    slide(rig, [a])
    _assert_integrity(rig, [a, b])
    assert swa_evicted(a) == 12 and a.lock.swa_released
    assert len(own_pages(rig, a, "swa")) == 4
    assert rig.allocator.full_to_swa_index_mapping[torch.tensor(row(rig, a, 10, 12))].tolist() == [0, 0]
    assert _used(rig) == {"full": 24, "swa": 22} and _sizes(rig) == (12, 0, 12, 6, 6)

    retract(rig, b)  # its 6 decode slots of each type go back; its branch becomes evictable
    _assert_integrity(rig, [a])
    assert _used(rig) == {"full": 18, "swa": 16} and _sizes(rig) == (12, 2, 10, 8, 4)

    finish(rig, a)  # 16 tokens cached: SWA everywhere but the two released positions
    _assert_integrity(rig)
    assert _sizes(rig) == (18, 18, 0, 16, 0)

    # oldest first: the SWA pages no hit at the path's ends needs (tokens 0..3, 8, 9), then b's leaf
    got = evict(rig, full=2)
    _assert_integrity(rig)
    assert (got.num_tokens_evicted, got.swa_num_tokens_evicted, got.mamba_num_evicted) == (2, 8, 0)
    assert _used(rig) == {"full": 16, "swa": 8}

    # d leaves a's path after token 9: hit 8 (the window 4..7; a hit at 10 needs the dropped SWA of 8, 9). Its
    # prefill recomputes 8, 9: the tree keeps its own full pages there (d's are duplicates, freed) and adopts
    # d's SWA pages into the tombstones, so the row's slots 8, 9 (the tree's) now pair with d's SWA pages
    d = _make_req(rig, list(range(10)) + [77])
    assert admit(rig, d) == 8
    extend(rig, [(d, 11)])
    _assert_integrity(rig, [d])
    assert rig.manager.tree.cached_pages == [17, 11] and _used(rig) == {"full": 17, "swa": 11}
    paired = rig.allocator.full_to_swa_index_mapping[torch.tensor(row(rig, d))].tolist()
    assert paired[:4] == [0, 0, 0, 0] and all(paired[4:])  # tokens 0..3 are tombstones

    c = _make_req(rig, list(a.origin_input_ids) + list(a.output_ids)[:6] + [99])
    assert admit(rig, c) == 16  # a's whole sequence: its window 12..15 survived
    extend(rig, [(c, 17)])
    _assert_integrity(rig, [c, d])
    finish(rig, c)
    finish(rig, d)
    _assert_integrity(rig)
    flush(rig)
    _assert_all_free(rig)


def test_cross_lifecycle() -> None:
    """4 encoder tokens per image; a: image 7 + 6 text tokens, b: image 7 + a's first 4 text tokens."""
    rig = _make_rig("cross", encoder_tokens=4)
    a = _make_req(rig, list(range(6)), image=7)
    assert admit(rig, a) == 0
    extend(rig, [(a, 10)])  # one chunk, encoder first (sglang has no chunked prefill for mllama)
    _assert_integrity(rig, [a])
    cached = rig.manager.tree.cached_pages
    assert dict(zip(rig.manager.names, cached, strict=True)) == {"full": 6, "cross": 4}
    assert row_pages(rig, a)["cross"] == [8, 9, 10, 11]  # one whole large page (4 cross pages each)
    # capacity in full-attention tokens: 6 locked + the cross large page's 3 full slots
    assert (rig.cache.evictable_size(), rig.cache.protected_size()) == (0, 9)

    b = _make_req(rig, list(range(4)) + [50, 51], image=7)
    assert admit(rig, b) == 8  # 4 encoder + 4 text tokens
    assert rig.cache.prefix_device_indices(b).tolist() == row(rig, a, 0, 8)
    other = _make_req(rig, list(range(6)), image=8)
    text_only = _make_req(rig, list(range(6)))
    assert admit(rig, other) == 0 and admit(rig, text_only) == 0  # the image keys the tree
    rig.cache.unlock(other.lock)
    rig.cache.unlock(text_only.lock)

    extend(rig, [(b, 10)])
    _assert_integrity(rig, [a, b])
    assert row(rig, b, 0, 8) == row(rig, a, 0, 8) and _used(rig) == {"full": 8, "cross": 4}
    for _ in range(3):
        decode(rig, [a, b])
        _assert_integrity(rig, [a, b])
    assert _used(rig) == {"full": 14, "cross": 4}

    retract(rig, b)
    _assert_integrity(rig, [a])
    assert _used(rig) == {"full": 11, "cross": 4}
    finish(rig, a)
    _assert_integrity(rig)
    # idle: 11 full pages + the cross large page's 3 full slots evictable, and sglang's sum is exact
    assert (rig.cache.evictable_size(), rig.cache.protected_size()) == (14, 0)
    assert rig.allocator.available_size() + rig.cache.evictable_size() == rig.jenga.num_large_pages * 3

    # a new image aborted straight after its prefill, before any checkpoint: its encoder positions go back as
    # cross-attention slots (the two types' slot ids overlap), its text as full slots
    e = _make_req(rig, [60, 61, 62], image=9)
    assert admit(rig, e) == 0
    alloc_extend(rig, [(e, 7)])
    _assert_integrity(rig, [e])
    assert _used(rig) == {"full": 14, "cross": 8}
    retract(rig, e)
    _assert_integrity(rig)
    assert _used(rig) == {"full": 11, "cross": 4}

    got = evict(rig, full=2)  # b's leaf (older than a's finish)
    assert got.num_tokens_evicted == 2 and _used(rig) == {"full": 9, "cross": 4}
    c = _make_req(rig, list(a.origin_input_ids)[4:] + list(a.output_ids)[:3] + [99], image=7)
    assert admit(rig, c) == 13  # 4 encoder + a's 9 cached text tokens
    extend(rig, [(c, len(c.origin_input_ids))])
    _assert_integrity(rig, [c])
    finish(rig, c)
    got = evict(rig, full=1000)  # the image's cross pages go with its key root's last node
    assert got.num_tokens_evicted == 10 and _used(rig) == {"full": 0, "cross": 0}
    flush(rig)
    _assert_all_free(rig)


def test_mamba_lifecycle() -> None:
    """a: 10 tokens in chunks of 6 + 4 (a state checkpoint after each); b extends a's prompt, e diverges
    at 8."""
    rig = _make_rig("mamba")
    a = _make_req(rig, list(range(10)))
    assert admit(rig, a) == 0 and not a.kv.holds_mamba
    alloc_extend(rig, [(a, 6)])
    set_state(rig, a, 6.0)  # the forward leaves the state after token 6 in a's slot
    after_prefill(rig, a)
    _assert_integrity(rig, [a])
    # a's own state + a copy of it at token 6 (evictable: a computes on from its own)
    assert rig.manager.tree.cached_pages == [6, 1] and _used(rig) == {"full": 6, MAMBA: 2}
    assert rig.cache.mamba_evictable_size() == 1
    alloc_extend(rig, [(a, 10)])
    set_state(rig, a, 10.0)
    after_prefill(rig, a)
    _assert_integrity(rig, [a])
    assert rig.manager.tree.cached_pages == [10, 2]

    b = _make_req(rig, list(range(10)) + [50, 51])
    assert admit(rig, b) == 10 and b.kv.holds_mamba  # the state at 10, copied into b's own slot
    assert rig.cache.prefix_device_indices(b).tolist() == row(rig, a, 0, 10)
    state = b.last_node.pages[rig.manager.names.index(MAMBA)][-1]  # the tree's state at token 10
    assert b.kv.mamba_cow_src_index.tolist() == rig.jenga.to_slots(MAMBA, [state]).tolist()
    e = _make_req(rig, list(range(8)) + [60, 61])
    assert admit(rig, e) == 6  # the checkpoint of a's first chunk
    _assert_integrity(rig, [a, b, e])
    assert rig.cache.mamba_protected_size() == 2  # b's and e's sources, locked until their prefill

    alloc_extend(rig, [(b, 12), (e, 10)])  # the forward first copies each matched state into its own slot
    assert (state_value(rig, b), state_value(rig, e)) == (10.0, 6.0)
    after_prefill(rig, b)
    after_prefill(rig, e)
    _assert_integrity(rig, [a, b, e])
    assert row(rig, b, 0, 10) == row(rig, a, 0, 10) and row(rig, e, 0, 8) == row(rig, a, 0, 8)
    assert rig.manager.tree.cached_pages == [14, 4] and _used(rig) == {"full": 14, MAMBA: 7}
    for _ in range(3):
        decode(rig, [a, b, e])
        _assert_integrity(rig, [a, b, e])

    retract(rig, b)  # its state slot goes back (not checkpointed)
    retract(rig, e)
    _assert_integrity(rig, [a])
    assert _used(rig) == {"full": 17, MAMBA: 5}
    finish(rig, a)  # a hands its own state over: the tree's 5th state, at token 13
    _assert_integrity(rig)
    assert rig.manager.tree.cached_pages == [17, 5] and _used(rig) == {"full": 17, MAMBA: 5}
    assert rig.manager.held_pages()[MAMBA] == []

    slots = rig.req_pool.mamba_allocator.available_size()
    got = evict(rig, mamba=1)  # room for one more state than is free now: one state dropped
    assert (got.num_tokens_evicted, got.mamba_num_evicted) == (0, 1)
    assert rig.req_pool.mamba_allocator.available_size() == slots + 1
    got = evict(rig, full=1000, mamba=1000)
    assert (got.num_tokens_evicted, got.mamba_num_evicted) == (17, 4)
    flush(rig)
    _assert_all_free(rig)


# ------------------------------------------------------------------------------------------------- placement
# Pages behind two 5-token rows allocated in one batch (32 free large pages), then after one decode step.
PLACED = {
    "swa": ({"full": [0, 1, 2, 3, 4], "swa": [6, 7, 8, 9, 10]},
            {"full": [16, 17, 18, 19, 20], "swa": [18, 19, 20, 21, 22]}),
    "cross": ({"full": [0, 1, 2, 3, 4], "cross": [8, 9, 10, 11]},
              {"full": [9, 10, 11, 12, 13], "cross": [20, 21, 22, 23]}),
    "mamba": ({"full": [26, 27, 28, 29, 30], MAMBA: [0]}, {"full": [39, 40, 41, 42, 43], MAMBA: [1]}),
}


def _two_in_one_batch(family: str) -> tuple[Any, Any, Any]:
    rig = _make_rig(family)
    image = (1, 2) if family == "cross" else (None, None)
    a, b = _make_req(rig, [1, 2, 3, 4, 5], image=image[0]), _make_req(rig, [6, 7, 8, 9, 10], image=image[1])
    admit(rig, a)
    admit(rig, b)
    n = len(a.origin_input_ids)
    extend(rig, [(a, n), (b, n)])  # one flat allocation of 2n slots, split by the plan
    _assert_integrity(rig, [a, b])
    return rig, a, b


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_places_each_request_in_its_own_large_pages(family: str) -> None:
    rig, a, b = _two_in_one_batch(family)
    assert (row_pages(rig, a), row_pages(rig, b)) == PLACED[family]
    _assert_disjoint_large_pages(rig, a, b)

    decode(rig, [a, b])  # one decode step (alloc_step): each new page joins its request's last large page
    _assert_integrity(rig, [a, b])
    _assert_disjoint_large_pages(rig, a, b)
    for r in (a, b):
        full = row_pages(rig, r)["full"]
        assert large_pages(rig, "full", full[-1:]) == large_pages(rig, "full", full[-2:-1])


# Global layer ids per type, as adapterkit builds the pools.
LAYERS = {"swa": {"full": [0, 2, 4], "swa": [1, 3, 5, 6]}, "cross": {"full": [0, 1, 3, 5], "cross": [2, 4, 6]},
          "mamba": {"full": [1]}}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_live_slot_of_every_layer_has_its_own_bytes(family: str) -> None:
    """The per-layer K/V views (and Mamba state views) of the one buffer: write a distinct value to every
    (layer, live slot), K and -V, through sglang's own buffer accessors (SWA layers at the paired SWA slot, as
    the attention backends translate), then read all back: no two live cells share bytes."""
    rig, a, b = _two_in_one_batch(family)
    decode(rig, [a, b])
    kv, jenga = rig.allocator.get_kvcache(), rig.jenga
    live = {name: [s for r in (a, b) for s in jenga.to_slots(name, row_pages(rig, r)[name]).tolist()]
            for name in LAYERS[family]}
    cells = [(lid, slot) for name, ids in LAYERS[family].items() for lid in ids for slot in live[name]]
    assert len(cells) <= 256  # bf16 holds these integers exactly
    for value, (lid, slot) in enumerate(cells, 1):
        kv.get_key_buffer(lid)[slot] = value
        kv.get_value_buffer(lid)[slot] = -value
    if family == "mamba":
        set_state(rig, a, 0.5)
        set_state(rig, b, 0.25)
    for value, (lid, slot) in enumerate(cells, 1):
        assert kv.get_key_buffer(lid)[slot].tolist() == [[value] * 2], (lid, slot)
        assert kv.get_value_buffer(lid)[slot].tolist() == [[-value] * 2], (lid, slot)
    if family == "mamba":
        assert (state_value(rig, a), state_value(rig, b)) == (0.5, 0.25)


def test_shared_placement_mixes_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison mode (SGLANG_JENGA_PLACEMENT=shared): one owner, so b's first full pages fill a's
    second large page, which the request-aware test above shows never happens by default."""
    monkeypatch.setenv(PLACEMENT_ENV, "shared")
    rig = _make_swa()
    a, b = _make_req(rig, [1, 2, 3, 4, 5]), _make_req(rig, [6, 7, 8, 9, 10])
    admit(rig, a)
    admit(rig, b)
    extend(rig, [(a, 5), (b, 5)])
    rig.manager.check_integrity()
    fa, fb = row_pages(rig, a)["full"], row_pages(rig, b)["full"]
    assert (fa, fb) == ([0, 1, 2, 3, 4], [5, 6, 7, 16, 17])
    assert large_pages(rig, "full", fa) & large_pages(rig, "full", fb) == {1}
    finish(rig, a)
    finish(rig, b)
    flush(rig)
    _assert_all_free(rig)


def test_swa_finish_over_a_twin_keeps_the_pairing() -> None:
    """Window 4; a and b have the same prompt, are prefilled in one batch and decode the same tokens, releasing
    their windows as they go. a finishes first: the tree gets its decode tokens, with tombstones where a had
    released its SWA pages. b's finish then finds those positions cached: its full pages there are duplicates
    (freed), its row takes the tree's, which pair with the tree's SWA pages where they live and with nothing at
    the tombstones (b's own SWA pages there are released too)."""
    rig = _make_swa(window=4)
    a, b = _make_req(rig, list(range(6))), _make_req(rig, list(range(6)))
    assert admit(rig, a) == admit(rig, b) == 0
    extend(rig, [(a, 6), (b, 6)])
    _assert_integrity(rig, [a, b])
    for _ in range(8):
        decode(rig, [a, b])
        slide(rig, [a, b])
        _assert_integrity(rig, [a, b])
    assert a.output_ids == b.output_ids and swa_evicted(b) > 6
    finish(rig, a)
    _assert_integrity(rig, [b])
    finish(rig, b)  # the whole mapping is checked here, slot by slot
    _assert_integrity(rig)
    swa_t = rig.manager.names.index("swa")
    cached = [p for node in rig.manager.tree.iter_nodes() for p in node.pages[swa_t]]
    assert None in cached and any(p is not None for p in cached)  # tombstones and live SWA pages
    flush(rig)
    _assert_all_free(rig)
