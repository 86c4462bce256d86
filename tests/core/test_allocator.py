"""Two-level allocator: exact page ids, request-aware placement, large-page return, atomic failures, stats."""

from __future__ import annotations

import pytest
from corekit import full, make_model, mamba, swa

from sglang_jenga.core import OutOfPagesError, TwoLevelAllocator, plan_layout


def _alloc(num_large: int = 4) -> TwoLevelAllocator:
    # full 2 B, swa 3 layers = 6 B, mamba 4 B -> large 12 B: 6 full, 2 swa, 3 mamba pages per large page.
    layout = plan_layout(make_model(full(), swa(4, layers=3), mamba(state_bytes=4)), 1)
    assert layout.large_page_bytes == 12
    return TwoLevelAllocator(layout, num_large)


def test_request_aware_placement_exact_ids() -> None:
    a = _alloc()
    assert a.alloc("full", 4, owner=1) == [0, 1, 2, 3]  # carves large page 0
    assert a.alloc("full", 3, owner=2) == [6, 7, 8]  # owner 2 gets its own large page 1
    assert a.alloc("full", 3, owner=1) == [4, 5, 12]  # finishes its open page 0, then carves large page 2
    assert a.alloc("swa", 1, owner=1) == [6]  # swa page 6 = large page 3, slot 0
    assert a.large_pages_free == 0
    a.check_integrity()


def test_large_page_returns_when_all_small_pages_free() -> None:
    a = _alloc()
    a.alloc("full", 4, owner=1)
    p2 = a.alloc("full", 3, owner=2)
    assert a.free("full", p2[:2]) == 0
    assert a.free("full", p2[2:]) == 1  # large page 1 back in the common pool
    assert a.large_pages_free == 3
    # another type can now carve it: LIFO pool hands out large page 1 first -> swa pages 2, 3
    assert a.alloc("swa", 2, owner=3) == [2, 3]
    a.check_integrity()


def test_decode_steps_keep_each_request_in_its_own_large_pages() -> None:
    a = _alloc(num_large=4)
    got = [a.alloc_each("full", [1, 2]) for _ in range(4)]
    assert got == [[0, 6], [1, 7], [2, 8], [3, 9]]
    # owner 1 finishing returns its whole large page 0 at once (its 2 unused slots were never handed out)
    assert a.free("full", [g[0] for g in got]) == 1
    a.check_integrity()


def test_decode_step_gives_full_owners_holes_then_fresh_pages() -> None:
    a = _alloc(num_large=5)
    a.alloc("full", 6, owner=1)  # large page 0, full: owner 1 needs a new open page for its next token
    a.alloc("full", 4, owner=2)  # large page 1: 10, 11 still free for owner 2
    a.alloc("full", 6, owner=3)  # large page 2
    a.free("full", [13])
    a.close_owner(3)  # 13 becomes a hole
    # owner 1 adopts the hole, owner 2 takes its next slot, owner 4 (new) gets a fresh large page (3)
    assert a.alloc_each("full", [1, 2, 4]) == [13, 10, 18]
    # an owner listed three times: its last slot, then a fresh large page (4) for the other two
    assert a.alloc_each("full", [2, 2, 2]) == [11, 24, 25]
    a.check_integrity()


def test_decode_step_of_a_type_whose_page_is_a_whole_large_page() -> None:
    # full 2 B, swa 5 layers = 10 B -> large 10 B: 5 full pages, 1 swa page per large page
    layout = plan_layout(make_model(full(), swa(4, layers=5)), 1)
    assert [t.pages_per_large for t in layout.types] == [5, 1]
    a, turn = TwoLevelAllocator(layout, 8, low_water=0), TwoLevelAllocator(layout, 8, low_water=0)
    a.alloc("swa", 1, owner=1)  # owner 1 has a (full) open page from `alloc`
    turn.alloc("swa", 1, owner=1)
    step = a.alloc_each("swa", [1, 2, 3])
    assert step == [turn.alloc("swa", 1, owner=o)[0] for o in (1, 2, 3)] == [1, 2, 3]  # LIFO pool
    assert a.free("swa", [2, 0]) == 2 and a.pool.free[-2:] == [2, 0]  # each page frees its large page
    a.check_integrity()
    assert a.free("swa", [1, 3]) == 2 and a.large_pages_free == 8
    a.check_integrity()
    with pytest.raises(OutOfPagesError):
        a.alloc_each("swa", list(range(9)))
    assert a.large_pages_free == 8


def test_bulk_alloc_and_free_keep_the_pool_lifo() -> None:
    a = _alloc(num_large=5)
    head = a.alloc("full", 2, owner=1)  # open large page 0, 4 slots left
    p1 = a.alloc("full", 16, owner=1)  # those 4 slots, then large pages 1 and 2 whole
    assert p1 == list(range(2, 18))
    assert a.free("full", p1) == 2 and a.pool.free == [4, 3, 1, 2]  # in the order of their first page
    p2 = a.alloc("full", 12, owner=2)  # LIFO: large page 2, then 1
    assert p2 == [*range(12, 18), *range(6, 12)]
    assert a.free("full", p2) == 2 and a.pool.free == [4, 3, 2, 1]
    assert a.free("full", head) == 1 and a.large_pages_free == 5
    a.check_integrity()


def test_bulk_alloc_fills_holes_before_taking_whole_large_pages() -> None:
    a = _alloc(num_large=4)
    p1 = a.alloc("full", 6, owner=1)  # large page 0 whole
    assert a.alloc("full", 6, owner=2) == list(range(6, 12))  # large page 1 whole
    a.free("full", [p1[1], p1[2]])  # two holes in large page 0
    # 12 pages: the holes first (last freed first), then one whole large page, then 4 of a fresh open one
    assert a.alloc("full", 12, owner=3) == [2, 1, *range(12, 18), *range(18, 22)]
    assert a.of("full").open_pages() == {3: 3} and a.of("full").holes() == []
    a.check_integrity()


def test_many_owners_keep_their_open_pages_through_closes() -> None:
    a = _alloc(num_large=400)
    owners = [7 * i - 500 for i in range(300)]  # negative, small and spread ids: the owner table grows and shifts
    first = {o: a.alloc("full", 1, owner=o)[0] for o in owners}
    for o in owners[::2]:
        a.close_owner(o)
    kept = owners[1::2]
    assert a.alloc_each("full", kept) == [first[o] + 1 for o in kept]  # each from its own open large page
    assert a.of("full").open_pages() == {o: first[o] // 6 for o in kept}
    a.check_integrity()


def test_page_ids_outlive_their_allocator() -> None:
    """The C allocator hands out one kept int object per page id (made on its first allocation): a page
    allocated again is the same value, and lists of page ids stay valid after the allocator is gone."""
    a = _alloc(num_large=60)
    first = a.alloc("full", 300, owner=1)
    assert first == list(range(300))
    a.free("full", first)
    again = a.alloc("full", 300, owner=2)
    step = a.alloc_each("full", [3, 4])  # each owner carves a large page of its own
    assert sorted(again) == first and step == [300, 306]
    del a
    assert sum(first) + sum(again) == 2 * sum(range(300)) and step == [300, 306]


def test_alloc_of_zero_pages_changes_nothing() -> None:
    a = _alloc()
    a.alloc("full", 2, owner=1)
    before = a.stats()
    assert a.alloc("full", 0, owner=1) == [] and a.alloc_each("full", []) == []
    assert a.stats() == before
    a.check_integrity()


def test_owner_pages_free_whole_large_pages() -> None:
    a = _alloc(num_large=4)
    p1 = a.alloc("full", 6, owner=1)
    p2 = a.alloc("full", 6, owner=2)
    assert (p1, p2) == ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11])
    assert a.free("full", p1) == 1
    assert a.stats().bytes_wasted == 0


def test_fallback_to_holes_then_to_other_owners_open_pages() -> None:
    a = _alloc(num_large=2)
    a.alloc("full", 4, owner=1)  # large 0: pages 0-3, 4-5 free (open for owner 1)
    a.alloc("full", 4, owner=2)  # large 1: pages 6-9, 10-11 free (open for owner 2)
    a.close_owner(1)  # 4, 5 become holes anyone may use
    assert a.alloc("full", 3, owner=3) == [4, 5, 10]  # holes first, then owner 2's open page
    a.check_integrity()


def test_out_of_pages_is_atomic() -> None:
    a = _alloc(num_large=1)
    a.alloc("full", 5, owner=1)
    before = a.stats()
    with pytest.raises(OutOfPagesError) as err:
        a.alloc("full", 2, owner=2)
    assert (err.value.requested, err.value.available) == (2, 1)
    with pytest.raises(OutOfPagesError):
        a.alloc_each("swa", [1])
    assert a.stats() == before
    a.check_integrity()


def test_bad_free_changes_nothing() -> None:
    a = _alloc()
    pages = a.alloc("full", 3, owner=1)
    before = a.stats()
    with pytest.raises(ValueError):
        a.free("full", [pages[0], 5])  # 5 was never allocated
    with pytest.raises(ValueError):
        a.free("full", [pages[0], pages[0]])
    with pytest.raises(ValueError):
        a.free("full", [10**6])
    for bad in ([pages[1], -1], [pages[1], 2**70], [pages[1], pages[2], pages[1]]):  # C-side checks: a page seen
        with pytest.raises(ValueError, match="full: page"):  # before the bad one is not left half-freed
            a.free("full", bad)
    with pytest.raises(TypeError):
        a.free("full", [pages[1], "7"])
    assert a.stats() == before and all(a.of("full").is_used(p) for p in pages)
    a.check_integrity()
    a.free("full", pages)
    assert a.large_pages_free == 4


def test_stats_count_holes_and_padding() -> None:
    layout = plan_layout(make_model(swa(4, layers=3), mamba(state_bytes=10)), 1, max_large_page_bytes=20)
    a = TwoLevelAllocator(layout, 3)  # large 12 B: swa 6 B x 2, mamba padded 10 -> 12 B x 1
    a.alloc("swa", 1, owner=1)
    a.alloc("mamba", 2, owner=1)
    s = a.stats()
    assert (s.large_pages_total, s.large_pages_free, s.bytes_total) == (3, 0, 36)
    swa_stats, mamba_stats = s.types
    assert (swa_stats.pages_used, swa_stats.pages_free_in_carved, swa_stats.large_pages_carved) == (1, 1, 1)
    assert mamba_stats.bytes_padding == 2 * 2
    assert s.bytes_wasted == 6 + 4
    assert s.wasted_fraction == pytest.approx(10 / 36)


def test_available_pages_counts_holes_and_free_large_pages() -> None:
    a = _alloc(num_large=3)
    a.alloc("full", 1, owner=1)
    assert a.available_pages("full") == 5 + 2 * 6
    assert a.available_pages("swa") == 2 * 2
    assert a.available_pages("mamba") == 2 * 3
