"""The core request manager: the one capacity decision, request-aware placement, the page -> request index,
window release, caching and closing, with exact page ids."""

from __future__ import annotations

import pytest
from corekit import cross, full, make_model, mamba, swa, toks

from sglang_jenga.core import BatchPart, CapacityPlan, HeldPages, KVCacheManager, OutOfPagesError, plan_layout


def _manager(*groups: tuple, num_large: int = 8) -> KVCacheManager:
    return KVCacheManager(plan_layout(make_model(*groups), 1), num_large, low_water=0)


def test_plan_counts_large_pages_beyond_free_carved_slots() -> None:
    # full 2 B/page, swa 4 B/page (2 layers): large page 4 B = 2 full or 1 swa page
    kv = _manager(full(), swa(2, layers=2))
    kv.open(1)
    kv.alloc(1, "full", 1)  # carves one large page: one free full slot left in it
    assert kv.plan({"full": 3}) == CapacityPlan(large_pages_needed=1, large_pages_free=7)  # ceil((3 - 1) / 2)
    assert kv.plan({"full": 1, "swa": 7}) == CapacityPlan(7, 7)
    assert kv.fits({"full": 1, "swa": 7}) and not kv.fits({"full": 2, "swa": 7})
    assert kv.fits({"full": 2, "swa": 7}, extra_large_pages=1)
    assert kv.largest_fitting(("full", "swa"), limit=100) == 5  # 5 swa + 5 full = 5 + 2 large pages (+1 slot)
    assert kv.fits_empty({"full": 16}) and not kv.fits_empty({"full": 17})


def test_each_request_gets_its_own_large_pages_and_frees_them_whole() -> None:
    kv = _manager(full(), swa(2, layers=2), num_large=16)  # a large page: 2 full pages or 1 swa page
    for rid in (1, 2):
        kv.open(rid)
    kv.alloc_tokens(1, 1)
    kv.alloc_tokens(2, 1)
    steps = [kv.alloc_step([1, 2])["full"] for _ in range(3)]
    with pytest.raises(ValueError, match="twice"):
        kv.alloc_step([1, 2, 1])
    with pytest.raises(KeyError):
        kv.alloc_step([1, 3])
    assert kv.hold_tokens([1, 2]) and not kv.hold_tokens([1, 3])
    own = {rid: [p for p in kv.held(rid).pages["full"] if p is not None] for rid in (1, 2)}
    assert {p // 2 for p in own[1]}.isdisjoint({p // 2 for p in own[2]}), (own, steps)  # no shared large page
    kv.close(1)
    assert kv.allocator.large_pages_free == 16 - 2 - 4  # request 1's 2 full + 4 swa large pages came back
    kv.check_integrity()


def test_decode_steps_reach_the_records_before_anything_reads_them() -> None:
    """Steps are recorded at the next call that reads the records: each reader right after steps."""
    kv = _manager(full(), swa(2, layers=2), num_large=64)
    for rid in (1, 2):
        kv.open(rid)
        kv.alloc_tokens(rid, 1)
    steps = [kv.alloc_step([1, 2]) for _ in range(3)]
    assert kv.held(1).pages["full"][1:] == [s["full"][0] for s in steps]
    assert kv.held(2).pages["swa"][1:] == [s["swa"][1] for s in steps]
    last = kv.alloc_step([1, 2])
    kv.free("swa", [last["swa"][0]])  # request 1's page of that step
    assert kv.held(1).pages["swa"][4] is None
    kv.alloc_step([1, 2])
    got = kv.alloc_tokens(1, 2)  # a chunk after steps goes to the positions after theirs
    assert kv.held(1).pages["full"][6:] == got["full"]
    kv.alloc_step([1, 2])
    assert kv.release_window(2, 9) == 9 - 2  # swa window 2: positions 0..6 freed, 6 from that step
    kv.alloc_step([1, 2])
    assert kv.alloc(1, "full", 1)[0] not in kv.held(1).pages["full"][:10]  # position 10, after the steps'
    kv.alloc_step([1, 2])
    kv.cache(1, list(range(11)))  # a checkpoint up to the step before: positions 0..10 to the tree
    assert kv.held(1) == HeldPages(11, {"full": [kv.held(1).pages["full"][0]], "swa": []})
    kv.alloc_step([1, 2])
    assert kv.close(1) == 2 + 1
    with pytest.raises(KeyError):  # a step of a closed request, right after steps it was in
        kv.alloc_step([1, 2])
    kv.alloc_step([2])
    kv.check_integrity()
    assert kv.close(2) == 2 * 11 - 7
    kv.evict_all()
    assert kv.allocator.large_pages_free == 64


def test_joint_allocation_packs_when_placement_would_run_short() -> None:
    kv = KVCacheManager(plan_layout(make_model(full(), swa(2, layers=2)), 1), 2, low_water=0)
    kv.open(1)
    kv.open(2)
    kv.alloc(1, "full", 1)  # request 1's open large page has a free full slot
    assert kv.fits({"full": 1, "swa": 1}) and not kv.fits({"full": 1, "swa": 2})
    got = kv.alloc_tokens(2, 1)  # placed alone it would carve a fresh large page for request 2's full slot
    assert got["full"] == [1] and len(got["swa"]) == 1  # packed into request 1's large page instead
    with pytest.raises(OutOfPagesError):
        kv.alloc_tokens(2, 1)
    kv.check_integrity()


def test_decode_step_near_the_end_of_the_pool_is_all_or_nothing() -> None:
    # a large page: 2 full pages or 1 swa page; 4 large pages
    kv = KVCacheManager(plan_layout(make_model(full(), swa(2, layers=2)), 1), 4, low_water=0)
    kv.open(1)
    kv.alloc_tokens(1, 2)  # one large page of full pages (now full), two of swa pages: one left
    before = (kv.allocator.large_pages_free, kv.held(1))
    with pytest.raises(OutOfPagesError):  # a new large page of each type: the full one fits alone, not both
        kv.alloc_step([1])
    assert (kv.allocator.large_pages_free, kv.held(1)) == before  # nothing taken, not even the full page
    kv.free("swa", [kv.held(1).pages["swa"][0]])
    got = kv.alloc_step([1])
    assert kv.allocator.large_pages_free == 0 and kv.held(1).pages["full"][2:] == got["full"]
    kv.check_integrity()


def test_batch_is_placed_again_packed_when_placement_runs_short() -> None:
    # a large page: 2 full pages or 1 cross page; the batch needs 2 full + 1 cross = both large pages
    kv = _manager(full(), cross(layers=2), num_large=2)
    batch = [BatchPart(1, 1), BatchPart(2, 1, start_tokens=3, extra_pages={"cross": 1})]
    # placed per request, 2's full page carves the second large page and its cross page finds none left:
    # everything goes back (2's record too) and is placed again packed
    got = kv.alloc_batch(batch)
    assert got == [{"full": [0]}, {"full": [1], "cross": [1]}] and kv.allocator.large_pages_free == 0
    assert kv.held(2) == HeldPages(3, {"full": [1], "cross": [1]})
    kv.check_integrity()
    with pytest.raises(OutOfPagesError):
        kv.alloc_batch([BatchPart(4, 1)])
    assert not kv.is_open(4)  # a refused batch opens no record
    assert kv.alloc_batch([BatchPart(1, 0), BatchPart(2, 0)]) == [{}, {}]  # nothing asked: nothing taken
    kv.check_integrity()


def test_batch_decode_step_and_state_first_records() -> None:
    kv = _manager(full(), mamba(state_bytes=2), num_large=8)  # full 2 B, state 2 B: 1 page per large page
    state = kv.alloc_batch([BatchPart(1, 0, extra_pages={"mamba": 1})])  # sglang takes the state slot first
    assert state == [{"mamba": [0]}] and kv.held(1).start_tokens == 0
    prefill = kv.alloc_batch([BatchPart(1, 2, start_tokens=5), BatchPart(2, 3)])  # 1 hit 5 cached tokens
    assert kv.held(1).start_tokens == 5 and kv.held(1).pages["full"] == prefill[0]["full"]
    step = kv.alloc_batch([BatchPart(1, 1), BatchPart(2, 1)])  # one token each: a decode step
    assert [len(s["full"]) for s in step] == [1, 1] and kv.held(2).pages["full"][-1:] == step[1]["full"]
    kv.check_integrity()


def test_frees_by_bare_page_id_find_their_request() -> None:
    kv = _manager(full(), swa(2))
    kv.open(1, start=0)
    pages = kv.alloc_tokens(1, 4)
    kv.free("swa", pages["swa"][:2])
    assert kv.held(1).pages["swa"] == [None, None, *pages["swa"][2:]]
    with pytest.raises(ValueError, match="not held by a request"):
        kv.free("swa", pages["swa"][:1])  # already free
    kv.check_integrity()


def test_release_window_frees_out_of_window_pages_and_the_prefix_lock() -> None:
    kv = _manager(full(), swa(2), num_large=16)
    kv.open(1)
    tokens = toks(4)
    kv.alloc_tokens(1, 4)
    node = kv.cache(1, tokens).node
    kv.lock(1, node)
    kv.close(1)
    hit = kv.match([*tokens, 9, 9])
    assert hit.hit_tokens == 4
    kv.open(2, start=4)
    kv.lock(2, hit.node)
    assert kv.locked_types(2) == {"full", "swa"}
    kv.alloc_tokens(2, 2)
    assert kv.release_window(2, 6) == 0  # tokens below 4 are the tree's; the window (tokens 4, 5) is needed
    assert kv.locked_types(2) == {"full"}  # its window has moved past the cached prefix: swa lock dropped
    kv.alloc_step([2])
    assert kv.release_window(2, 7) == 1  # token 4 left the window
    assert kv.held(2).pages["swa"][0] is None
    kv.check_integrity()


def test_cache_hands_pages_to_the_tree_and_states_over() -> None:
    kv = _manager(full(), mamba(interval=4), num_large=16)
    kv.open(1)
    live = kv.alloc(1, "mamba", 1)[0]
    kv.alloc_tokens(1, 6)
    copy = kv.alloc(1, "mamba", 1)[0]
    result = kv.cache(1, toks(4), states={"mamba": copy})  # a chunk: 4 tokens cached with the copy
    assert result.new_tokens == 4 and kv.held(1).start_tokens == 4
    assert kv.held(1).pages["mamba"] == [live] and len(kv.held(1).pages["full"]) == 2
    kv.check_integrity()
    kv.cache(1, toks(6), states={"mamba": live})  # finish: the live state is handed over
    assert kv.held(1).pages == {"full": [], "mamba": []}
    assert kv.close(1) == 0
    assert kv.match(toks(6)).hit_tokens == 6
    kv.check_integrity()


def test_close_frees_what_is_left_and_evict_all_empties_the_pool() -> None:
    kv = _manager(full(), swa(2), num_large=16)
    kv.open(7)
    kv.alloc_tokens(7, 5)
    kv.cache(7, toks(3))
    assert kv.close(7) == 4  # positions 3 and 4 of both types
    kv.evict_all()
    assert kv.allocator.large_pages_free == 16
    kv.check_integrity()
