"""Two-level allocator: a common pool of large pages, carved by per-type small-page allocators.

Level 1 (`LargePagePool`): large pages 0..N-1, a LIFO free list. Level 2 (`SmallPageAllocator`, one per type):
a type carves a free large page into `pages_per_large` small pages (ids `lp*k .. lp*k+k-1`, see layout.py) and
hands the large page back to the pool the moment its last small page is freed.

Request-aware placement: each owner (request id) has an *open* large page per type and takes its pages from
there first. When it is full, the owner adopts another large page as its open page: one that already has free
slots (holes left by freed pages; filling them first keeps fragmentation low), else a freshly carved one.
Under memory pressure (at most `low_water` free large pages, default 1/64 of the pool) it takes free slots of
other owners' open pages before carving, so reserved tails do not strand memory. A request's pages of one type
thus sit together and tend to free whole large pages at once. An allocation of whole large pages' worth with no
holes about takes whole free large pages (no open page), as does a decode step of a type whose large page is a
single small page. `free` and `alloc` are atomic: an `OutOfPagesError` or `ValueError` leaves the state untouched.

The bookkeeping lives in C (`_pages.c`: arrays per large page and per small page, plain loops; the placement
above, operation for operation); this module adds the integrity checks and the counters' views. Owners are ints
(int64: request ids, STATE_OWNER). Cost: O(1) per page and per owner, no scan over the pool; page ids come and go
as Python lists of ints, each page id's int object made on its first allocation and kept (one pointer per small
page), so an allocation builds no ints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from . import _pages
from .layout import Layout, TypeLayout


class OutOfPagesError(MemoryError):
    """`requested` pages of `type_name` asked for, only `available` free; nothing was allocated."""

    def __init__(self, type_name: str, requested: int, available: int) -> None:
        super().__init__(f"{type_name}: {requested} pages requested, {available} available")
        self.type_name = type_name
        self.requested = requested
        self.available = available


_pages.set_out_of_pages_error(OutOfPagesError)


class TypeStats(NamedTuple):
    """Counters of one type. `pages_free_in_carved` are free small pages inside large pages it has carved."""

    name: str
    pages_used: int
    pages_free_in_carved: int
    large_pages_carved: int
    bytes_used: int
    bytes_free_in_carved: int
    bytes_padding: int


class AllocatorStats(NamedTuple):
    """Pool-wide counters. `bytes_wasted` = free small pages inside carved large pages + padding of used
    pages."""

    large_pages_total: int
    large_pages_free: int
    large_page_bytes: int
    bytes_total: int
    bytes_used: int
    bytes_wasted: int
    types: tuple[TypeStats, ...]

    @property
    def wasted_fraction(self) -> float:
        return self.bytes_wasted / self.bytes_total if self.bytes_total else 0.0


class LargePagePool(_pages.Pool):
    """The common pool: `num_large_pages` large pages, `num_free` of them free; `free` (a copy, the next one handed
    out last) and `carver` (per large page the index of the type that carved it, None while free) for checks.

    `low_water` (settable): while at most this many large pages are free, owners fill other owners' open large
    pages before carving new ones (request-aware placement yields to memory pressure).
    """

    def check_integrity(self, num_types: int) -> None:
        free, carver = self.free, self.carver
        assert len(set(free)) == len(free) == self.num_free, "large page on the free list twice"
        free_set = set(free)
        for lp, t in enumerate(carver):
            assert (t is None) == (lp in free_set), f"large page {lp}: carver {t} vs free list"
            assert t is None or 0 <= t < num_types


class SmallPageAllocator(_pages.Pages):
    """Small pages of one type. Mutated only through `alloc`, `alloc_each`, `free`, `close_owner`:

      alloc(num_pages, owner)   `num_pages` page ids for `owner`, placed request-aware (module docstring).
                                Raises OutOfPagesError (nothing allocated) if fewer are available.
      alloc_each(owners)        one page per owner, in order (a decode step): the pages serving the owners one
                                after the other would give. Raises OutOfPagesError, nothing allocated.
      free(pages)               free `pages`; returns how many large pages went back to the pool. Raises
                                ValueError, freeing nothing, if a page is not allocated or listed twice. A large
                                page all of whose used pages are freed in one call (of at least k pages) goes back
                                at once, in the order of its first page.
      close_owner(owner)        forget `owner`'s open large page (the request finished); its free slots become
                                holes.

    Read-only: `available()` (free slots in carved large pages + free large pages * k), `pages_used`,
    `pages_free_in_carved`, `large_pages_carved`, `num_pages`, `is_used(p)`, `used_flags` (a byte per small
    page), `used_in_large(lp)`; for checks, `free_slots(lp)` (its free-slot stack, next handed out last; None
    where it keeps none: a large page not carved, or full and not open), `holes()` and `open_with_slots()` (in
    the order they are taken), `open_pages()` (owner -> open large page).
    """

    def __init__(self, pool: LargePagePool, type_index: int, geometry: TypeLayout) -> None:
        super().__init__(pool, type_index, geometry.pages_per_large, geometry.name)
        self.geometry = geometry

    def stats(self) -> TypeStats:
        g = self.geometry
        return TypeStats(self.name, self.pages_used, self.pages_free_in_carved, self.large_pages_carved,
                         self.pages_used * g.page_bytes, self.pages_free_in_carved * g.page_bytes,
                         self.pages_used * g.padding_bytes_per_page)

    def check_integrity(self) -> None:
        """Assert: carved pages belong to this type, used + free slots == k per carved page, counters match,
        free-slot stacks exist exactly where the class docstring says, open/hole bookkeeping consistent, no used
        page outside a carved large page. O(pool)."""
        k, used, carver = self.pages_per_large, self.used_flags, self.pool.carver
        opened = self.open_pages()
        opener = {lp: o for o, lp in opened.items()}
        assert len(opener) == len(opened), f"{self.name}: a large page open for two owners"
        holes, open_avail = self.holes(), self.open_with_slots()
        assert len(set(holes)) == len(holes) and len(set(open_avail)) == len(open_avail)
        holes_set, open_set = set(holes), set(open_avail)
        used_total = free_total = carved = 0
        for lp, t in enumerate(carver):
            stack, used_here = self.free_slots(lp), used.count(1, lp * k, lp * k + k)
            if t != self.type_index:
                assert stack is None and used_here == 0, f"{self.name}: pages in large page {lp} it has not carved"
                assert lp not in opener and lp not in holes_set and lp not in open_set
                continue
            slots = stack or []
            assert len(set(slots)) == len(slots) < k, f"{self.name}: bad free list in large page {lp}"
            assert all(lp * k <= s < lp * k + k and not used[s] for s in slots)
            assert used_here + len(slots) == k, f"{self.name}: large page {lp} used + free != k"
            assert (stack is not None) == (bool(slots) or lp in opener), f"{self.name}: free list {lp}"
            assert (lp in holes_set) == (bool(slots) and lp not in opener)
            assert (lp in open_set) == (bool(slots) and lp in opener)
            carved, used_total, free_total = carved + 1, used_total + used_here, free_total + len(slots)
        assert carved == self.large_pages_carved, f"{self.name}: carved count"
        assert used_total == self.pages_used == used.count(1), f"{self.name}: used count"
        assert used.count(0) + used.count(1) == len(used) == self.num_pages
        assert free_total == self.pages_free_in_carved, f"{self.name}: free-in-carved count"


class TwoLevelAllocator:
    """All types' small-page allocators over one common pool of `num_large_pages` large pages."""

    def __init__(self, layout: Layout, num_large_pages: int, low_water: int | None = None) -> None:
        """`low_water` (default: 1/64 of the pool, see LargePagePool) bounds request-aware placement."""
        self.layout = layout
        low = num_large_pages // 64 if low_water is None else low_water
        self.pool = LargePagePool(num_large_pages, low)
        self.types = tuple(SmallPageAllocator(self.pool, i, t) for i, t in enumerate(layout.types))
        self._by_name = {a.name: a for a in self.types}

    @classmethod
    def for_bytes(cls, layout: Layout, pool_bytes: int) -> TwoLevelAllocator:
        """As many large pages as fit in `pool_bytes`."""
        return cls(layout, layout.large_pages_for(pool_bytes))

    def of(self, name: str) -> SmallPageAllocator:
        """The small-page allocator of type `name` (KeyError if unknown); cache it on hot paths."""
        return self._by_name[name]

    def alloc(self, name: str, num_pages: int, owner: int) -> list[int]:
        """See SmallPageAllocator.alloc."""
        return self._by_name[name].alloc(num_pages, owner)

    def alloc_each(self, name: str, owners: Sequence[int]) -> list[int]:
        """See SmallPageAllocator.alloc_each."""
        return self._by_name[name].alloc_each(owners)

    def free(self, name: str, pages: Iterable[int]) -> int:
        """See SmallPageAllocator.free."""
        return self._by_name[name].free(pages)

    def close_owner(self, owner: int) -> None:
        """Forget `owner`'s open large pages in every type."""
        for a in self.types:
            a.close_owner(owner)

    def available_pages(self, name: str) -> int:
        return self._by_name[name].available()

    @property
    def large_pages_free(self) -> int:
        return self.pool.num_free

    def stats(self) -> AllocatorStats:
        """Counters for the adapter's stats endpoint. O(types)."""
        types = tuple(a.stats() for a in self.types)
        large = self.layout.large_page_bytes
        used = sum(t.bytes_used for t in types)
        wasted = sum(t.bytes_free_in_carved + t.bytes_padding for t in types)
        return AllocatorStats(self.pool.total, self.pool.num_free, large, self.pool.total * large, used,
                              wasted, types)

    def check_integrity(self) -> None:
        """Assert the pool and every type are consistent and free + carved large pages == total. O(pages)."""
        self.pool.check_integrity(len(self.types))
        carved = sum(a.large_pages_carved for a in self.types)
        assert carved + self.pool.num_free == self.pool.total, "large pages lost or duplicated"
        for a in self.types:
            a.check_integrity()
