"""Two-level allocator: a common pool of large pages, carved by per-type small-page allocators.

Level 1 (`LargePagePool`): large pages 0..N-1, a LIFO free list. Level 2 (`SmallPageAllocator`, one per type):
a type carves a free large page into `pages_per_large` small pages (ids `lp*k .. lp*k+k-1`, see layout.py) and
hands the large page back to the pool the moment its last small page is freed.

Request-aware placement: each owner (request id) has an *open* large page per type and takes its pages from
there first. When it is full, the owner adopts another large page as its open page: one that already has free
slots (holes left by freed pages; filling them first keeps fragmentation low), else a freshly carved one.
Under memory pressure (at most `low_water` free large pages, default 1/64 of the pool) it takes free slots of
other owners' open pages before carving, so reserved tails do not strand memory. A request's pages of one type
thus sit together and tend to free whole large pages at once. Cost: O(1) amortised per page (carving k slots
is paid once per k pages); no scan over all pages. The per-page work runs in C where it can: a decode step is
one gather and one pop per owner (`map`/`itemgetter`), whole large pages go out and come back by bytearray and
list slices, validation is a gather of flags. `free` and `alloc` are atomic: an `OutOfPagesError` or
`ValueError` leaves the state untouched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, islice, repeat
from operator import floordiv, itemgetter, not_
from typing import NamedTuple, cast

from .layout import Layout, TypeLayout


class OutOfPagesError(MemoryError):
    """`requested` pages of `type_name` asked for, only `available` free; nothing was allocated."""

    def __init__(self, type_name: str, requested: int, available: int) -> None:
        super().__init__(f"{type_name}: {requested} pages requested, {available} available")
        self.type_name = type_name
        self.requested = requested
        self.available = available


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


class LargePagePool:
    """The common pool. `carver[lp]` is the index of the type that carved `lp`, None while it is free.

    `low_water`: while at most this many large pages are free, owners fill other owners' open large pages
    before carving new ones (request-aware placement yields to memory pressure).
    """

    def __init__(self, num_large_pages: int, low_water: int = 0) -> None:
        if num_large_pages < 0 or low_water < 0:
            raise ValueError("num_large_pages and low_water must be >= 0")
        self.total = num_large_pages
        self.low_water = low_water
        self.free: list[int] = list(range(num_large_pages - 1, -1, -1))
        self.carver: list[int | None] = [None] * num_large_pages

    def check_integrity(self, num_types: int) -> None:
        free = set(self.free)
        assert len(free) == len(self.free), "large page on the free list twice"
        for lp, t in enumerate(self.carver):
            assert (t is None) == (lp in free), f"large page {lp}: carver {t} vs free list"
            assert t is None or 0 <= t < num_types


class SmallPageAllocator:
    """Small pages of one type. Mutated only through `alloc`, `alloc_each`, `free`, `close_owner`.

    Bookkeeping: `_free_in[lp]` is the free-slot stack of carved large page `lp` (pop = next handed out); it
    exists exactly for carved large pages that have free slots or are some owner's open page (a large page
    taken whole for a bulk request has none until a page of it is freed). `_open_slots[owner]` is the same
    list object as `_free_in[_open[owner]]`, so a decode step is one pop per owner.
    """

    def __init__(self, pool: LargePagePool, type_index: int, geometry: TypeLayout) -> None:
        self.pool = pool
        self.type_index = type_index
        self.geometry = geometry
        self.name = geometry.name
        self.pages_per_large = geometry.pages_per_large
        self.pages_used = 0
        self.pages_free_in_carved = 0
        self.large_pages_carved = 0
        self._free_in: dict[int, list[int]] = {}  # see the class docstring
        self._avail: dict[int, None] = {}  # carved, not open, with free slots (insertion-ordered set)
        self._open_avail: dict[int, None] = {}  # open, with free slots
        self._open: dict[int, int] = {}  # owner -> its open large page
        self._opener: dict[int, int] = {}  # open large page -> owner
        self._open_slots: dict[int, list[int]] = {}  # owner -> _free_in[its open large page]
        self._used = bytearray(pool.total * self.pages_per_large)

    @property
    def num_pages(self) -> int:
        """Small pages this type could hold if it carved every large page."""
        return len(self._used)

    def available(self) -> int:
        """Pages `alloc` can return now: free slots in carved large pages + free large pages * k. O(1)."""
        return self.pages_free_in_carved + len(self.pool.free) * self.pages_per_large

    def is_used(self, page: int) -> bool:
        return bool(self._used[page])

    @property
    def used_flags(self) -> bytearray:
        """One byte per small page, 1 while allocated. Read-only for callers (fast bulk checks)."""
        return self._used

    def used_in_large(self, large_page: int) -> int:
        """Used small pages of this type inside `large_page` (0 if this type has not carved it). O(1)."""
        if self.pool.carver[large_page] != self.type_index:
            return 0
        return self.pages_per_large - len(self._free_in.get(large_page, ()))

    def alloc(self, num_pages: int, owner: int) -> list[int]:
        """`num_pages` page ids for `owner`, placed request-aware (module docstring). Raises OutOfPagesError
        (nothing allocated) if fewer are available. O(num_pages) amortised, whole large pages by slices."""
        if num_pages > self.available():
            raise OutOfPagesError(self.name, num_pages, self.available())
        out: list[int] = []
        if num_pages and self._open_slots.get(owner):
            self._take(self._open[owner], num_pages, out)
        k, pool = self.pages_per_large, self.pool
        while len(out) < num_pages:
            whole = min((num_pages - len(out)) // k, len(pool.free) - pool.low_water)
            if whole > 0 and not self._avail:
                self._take_whole(whole, out)  # bulk prefill: whole large pages, no free lists
            else:
                self._take(self._next_source(owner), num_pages - len(out), out)
        self.pages_used += num_pages
        return out

    def alloc_each(self, owners: Sequence[int]) -> list[int]:
        """One page per owner, in order (a decode step): the pages serving the owners one after the other
        would give. Raises OutOfPagesError, nothing allocated. O(len): owners whose open large page has a free
        slot take it with one C-level pop each; the others get new open pages in one batch (`_open_new`). A type
        whose large page holds one small page (Gemma-3's sliding window at the tiny zoo's sizes) takes whole
        large pages, as `alloc` does."""
        n, pool = len(owners), self.pool
        if n > self.pages_free_in_carved + len(pool.free) * self.pages_per_large:
            raise OutOfPagesError(self.name, n, self.available())
        if self.pages_per_large == 1 and len(pool.free) - pool.low_water >= n:
            whole: list[int] = []
            self._take_whole(n, whole)  # a small page is a whole large page: no open pages to keep
            self.pages_used += n
            return whole
        slots = self._slots_of(owners)
        out = self._pop_open(owners, cast(Sequence[list[int]], slots)) if all(slots) else self._alloc_new(owners, slots)
        if out is None:  # an owner listed more often than its open page has free slots, or memory pressure
            return self._alloc_each_in_turn(owners)
        self.pages_used += n
        return out

    def _slots_of(self, owners: Sequence[int]) -> Sequence[list[int] | None]:
        """Each owner's open-page free list (None: no open page); one C-level gather when all have one."""
        if len(owners) > 1:
            try:
                return cast(tuple[list[int], ...], itemgetter(*owners)(self._open_slots))
            except KeyError:
                pass
        return list(map(self._open_slots.get, owners))

    def _alloc_new(self, owners: Sequence[int], slots: Sequence[list[int] | None]) -> list[int] | None:
        """`alloc_each` when some owners need a new open large page: pop for the others, then open new pages
        in one batch, which cannot depend on the pops while the pool stays above low water and each of these
        owners is listed once. Returns None, changing nothing, when that does not hold."""
        needy = list(compress(range(len(owners)), map(not_, slots)))
        new_owners = [owners[i] for i in needy]
        pool = self.pool
        if len(pool.free) - pool.low_water < len(needy) or len(set(new_owners)) < len(needy):
            return None
        out = self._pop_open(list(compress(owners, slots)), cast(list[list[int]], list(compress(slots, slots))))
        if out is not None:
            for i, page in zip(needy, self._open_new(new_owners), strict=True):
                out.insert(i, page)
        return out

    def _pop_open(self, owners: Sequence[int], slots: Sequence[list[int]]) -> list[int] | None:
        """Pop one page from each of `slots` (the free lists of `owners`' open pages), or change nothing and
        return None if a list runs out (an owner listed twice)."""
        out: list[int] = []
        try:
            out.extend(map(list.pop, slots))
        except IndexError:
            for s, p in zip(reversed(slots[:len(out)]), reversed(out), strict=True):
                s.append(p)
            return None
        used = self._used
        for p in out:
            used[p] = 1
        self.pages_free_in_carved -= len(out)
        if not all(slots):  # some open pages just filled up
            open_, open_avail = self._open, self._open_avail
            for owner in compress(owners, map(not_, slots)):
                open_avail.pop(open_[owner], None)
        return out

    def _open_new(self, owners: list[int]) -> list[int]:
        """First page of a new open large page for each owner (their open pages are full or absent), in
        order, as `_next_source` would give them: holes first (in `_avail` order), then fresh large pages
        (LIFO from the pool), as bulk operations."""
        opener, free_in = self._opener, self._free_in
        for lp in [lp for lp in map(self._open.get, owners) if lp is not None]:
            del opener[lp], free_in[lp]  # close_owner of a full open page (its owner entries are overwritten)
        holes = list(islice(self._avail, min(len(self._avail), len(owners))))
        for lp in holes:
            del self._avail[lp]
        lps = holes + self._carve_many(len(owners) - len(holes))
        slots = [self._free_in[lp] for lp in lps]
        self._open.update(zip(owners, lps, strict=True))
        self._opener.update(zip(lps, owners, strict=True))
        self._open_slots.update(zip(owners, slots, strict=True))
        out = list(map(list.pop, slots))
        used = self._used
        for p in out:
            used[p] = 1
        self._open_avail.update(dict.fromkeys(compress(lps, slots)))
        self.pages_free_in_carved -= len(out)
        return out

    def _carve_many(self, count: int) -> list[int]:
        """Carve `count` free large pages (LIFO) with full free lists; returns them in carving order."""
        free, carver, k, t = self.pool.free, self.pool.carver, self.pages_per_large, self.type_index
        lps = free[len(free) - count:] if count else []
        del free[len(free) - count:]
        lps.reverse()
        for lp in lps:
            carver[lp] = t
        self._free_in.update({lp: list(range(lp * k + k - 1, lp * k - 1, -1)) for lp in lps})
        self.pages_free_in_carved += count * k
        self.large_pages_carved += count
        return lps

    def _alloc_each_in_turn(self, owners: Sequence[int]) -> list[int]:
        """`alloc_each` one owner after the other (repeated owners, or under memory pressure)."""
        out: list[int] = []
        for owner in owners:
            self._take(self._source_for(owner), 1, out)
        self.pages_used += len(owners)
        return out

    def free(self, pages: Iterable[int]) -> int:
        """Free `pages`; returns how many large pages went back to the pool. Raises ValueError, freeing
        nothing, if a page is not allocated or listed twice. O(len(pages))."""
        pages = pages if type(pages) is list else list(pages)
        self._check_freeable(pages)
        before = len(self.pool.free)
        if self.pages_per_large == 1:
            self._free_singles(pages)
            return len(pages)
        if len(pages) >= self.pages_per_large:
            pages = self._free_whole_large(pages)
        if pages:
            self._free_each(pages)
        return len(self.pool.free) - before

    def close_owner(self, owner: int) -> None:
        """Forget `owner`'s open large page (call when the request finishes); its free slots become holes."""
        lp = self._open.pop(owner, None)
        if lp is not None:
            del self._opener[lp], self._open_slots[owner]
            if self._open_avail.pop(lp, 0) is None:
                self._avail[lp] = None
            else:
                del self._free_in[lp]  # full and no longer open: no free list

    def stats(self) -> TypeStats:
        g = self.geometry
        return TypeStats(self.name, self.pages_used, self.pages_free_in_carved, self.large_pages_carved,
                         self.pages_used * g.page_bytes, self.pages_free_in_carved * g.page_bytes,
                         self.pages_used * g.padding_bytes_per_page)

    def check_integrity(self) -> None:
        """Assert: carved pages belong to this type, used + free slots == k per carved page, counters match,
        free lists exist exactly where the class docstring says, open/avail bookkeeping consistent, no used
        page outside a carved large page. O(pool)."""
        k, used, used_total, free_total = self.pages_per_large, self._used, 0, 0
        carved = [lp for lp, t in enumerate(self.pool.carver) if t == self.type_index]
        assert len(carved) == self.large_pages_carved, f"{self.name}: carved count"
        assert set(self._free_in) <= set(carved), f"{self.name}: free list of a large page it has not carved"
        for lp in carved:
            slots = self._free_in.get(lp, [])
            assert len(set(slots)) == len(slots) < k, f"{self.name}: bad free list in large page {lp}"
            assert all(lp * k <= s < lp * k + k and not used[s] for s in slots)
            used_here = used.count(1, lp * k, lp * k + k)
            assert used_here + len(slots) == k, f"{self.name}: large page {lp} used + free != k"
            assert (lp in self._free_in) == (bool(slots) or lp in self._opener), f"{self.name}: free list {lp}"
            assert (lp in self._avail) == (bool(slots) and lp not in self._opener)
            assert (lp in self._open_avail) == (bool(slots) and lp in self._opener)
            used_total, free_total = used_total + used_here, free_total + len(slots)
        assert used_total == self.pages_used == used.count(1), f"{self.name}: used count"
        assert free_total == self.pages_free_in_carved, f"{self.name}: free-in-carved count"
        assert {lp: o for o, lp in self._open.items()} == self._opener
        assert self._open_slots.keys() == self._open.keys()
        assert all(self._open_slots[o] is self._free_in[lp] for o, lp in self._open.items())

    def _source_for(self, owner: int) -> int:
        """Large page for the owner's next single page: its open page if that has a free slot, else
        `_next_source`."""
        return self._open[owner] if self._open_slots.get(owner) else self._next_source(owner)

    def _next_source(self, owner: int) -> int:
        """Large page for the owner's next slots: a large page with holes (made its open page), else a fresh
        one (made its open page) while the pool is above its low-water mark, else other owners' open pages'
        free slots, else a fresh one regardless."""
        pool = self.pool
        if self._avail:
            lp = next(iter(self._avail))
            del self._avail[lp]
        elif pool.free and (len(pool.free) > pool.low_water or not self._open_avail):
            lp = self._carve()
        else:
            return next(iter(self._open_avail))
        self._set_open(owner, lp)
        return lp

    def _take(self, lp: int, want: int, out: list[int]) -> int:
        """Allocate up to `want` (>= 1) of `lp`'s free slots, in stack order, into `out`; returns the last."""
        slots, used = self._free_in[lp], self._used
        cut = max(0, len(slots) - want)
        chunk = slots[cut:]
        del slots[cut:]
        chunk.reverse()
        for p in chunk:
            used[p] = 1
        out.extend(chunk)
        self.pages_free_in_carved -= len(chunk)
        if not slots:
            self._avail.pop(lp, None)
            self._open_avail.pop(lp, None)
        return chunk[-1]

    def _take_whole(self, count: int, out: list[int]) -> None:
        """Carve `count` free large pages (LIFO) and allocate all their small pages into `out`, no free lists.
        Large pages popped as a run of consecutive ids (up or down, the pool's usual order) get their flags,
        carver entries and ids by slices."""
        free, carver, k, t = self.pool.free, self.pool.carver, self.pages_per_large, self.type_index
        lps = free[len(free) - count:]
        del free[len(free) - count:]
        lps.reverse()
        self.large_pages_carved += count
        step = 1 if lps[-1] >= lps[0] else -1
        if lps != list(range(lps[0], lps[-1] + step, step)):
            for lp in lps:
                carver[lp] = t
            if k == 1:  # a small page is its large page
                used = self._used
                for lp in lps:
                    used[lp] = 1
                out.extend(lps)
                return
            ones, used = b"\x01" * k, self._used
            for lp in lps:
                used[lp * k:lp * k + k] = ones
                out.extend(range(lp * k, lp * k + k))
            return
        lo, hi = min(lps[0], lps[-1]), max(lps[0], lps[-1])
        carver[lo:hi + 1] = [t] * count
        self._used[lo * k:hi * k + k] = b"\x01" * (count * k)
        if lps[0] == lo:
            out.extend(range(lo * k, hi * k + k))
            return
        block = [0] * (count * k)  # large pages downwards, each one's pages upwards: one strided slice per slot
        for j in range(k):
            block[j::k] = range(hi * k + j, lo * k + j - k, -k)
        out.extend(block)

    def _free_whole_large(self, pages: list[int]) -> list[int]:
        """Bulk free: return every large page all of whose used pages are in `pages` to the pool at once, in
        the order of their first page in `pages`; the pages of the other large pages (still flagged used) are
        returned for the per-page path. A run of whole large pages laid out as `_take_whole` hands them out
        (`_block_run`) is recognised by one comparison and released by slices; the rest is counted per page."""
        k, free_in = self.pages_per_large, self._free_in
        start, blocks = self._block_run(pages)
        rest = pages[:start] + pages[start + len(blocks) * k:] if blocks else pages
        counts = Counter(map(floordiv, rest, repeat(k)))
        whole = [lp for lp, c in counts.items() if c == k or (lp in free_in and c + len(free_in[lp]) == k)]
        if not whole and not blocks:
            return pages
        holes = self._release_blocks(blocks) + self._release_each(whole)
        if blocks:  # order of first appearance: large pages met before the run, the run, the others
            head = set(map(floordiv, pages[:start], repeat(k)))
            split = next((i for i, lp in enumerate(whole) if lp not in head), len(whole))
            whole[split:split] = blocks
        self.pool.free.extend(whole)
        self.pages_used -= len(whole) * k - holes
        self.pages_free_in_carved -= holes
        self.large_pages_carved -= len(whole)
        if len(whole) == len(counts) + len(blocks):
            return []
        return list(compress(pages, itemgetter(*pages)(self._used)))

    def _block_run(self, pages: list[int]) -> tuple[int, list[int]]:
        """Whole large pages laid out as `_take_whole` hands them out, after at most k - 1 other pages (an
        open page's slots) and up to the end but for fewer than k pages: consecutive large pages, upwards or
        downwards, each one's small pages upwards. Returns (index of the run's first page, its large pages),
        or (0, []). O(1) to reject most lists, one C-level comparison to accept."""
        k, n = self.pages_per_large, len(pages)
        start = next((i for i in range(min(k, n)) if pages[i] % k == 0), 0)
        count, first = (n - start) // k, pages[start] // k
        if count < 2:
            return 0, []
        run = pages[start:start + count * k]
        if run[-1] == (first + count) * k - 1 and run == list(range(first * k, (first + count) * k)):
            return start, list(range(first, first + count))
        if run[-1] == (first - count + 2) * k - 1:
            expected = [0] * (count * k)
            for j in range(k):
                expected[j::k] = range(first * k + j, (first - count) * k + j, -k)
            if run == expected:
                return start, list(range(first, first - count, -1))
        return 0, []

    def _release_blocks(self, lps: list[int]) -> int:
        """Return a run of consecutive whole large pages (`_block_run`) to this type's bookkeeping: flags and
        carver entries by slices. Returns their free slots (0: all were used)."""
        if not lps:
            return 0
        k, lo, hi = self.pages_per_large, min(lps[0], lps[-1]), max(lps[0], lps[-1])
        self._used[lo * k:hi * k + k] = bytes((hi - lo + 1) * k)
        self.pool.carver[lo:hi + 1] = [None] * (hi - lo + 1)
        for lp in self._free_in.keys() & set(lps):  # open pages that were full
            self._unlink(lp)
        return 0

    def _release_each(self, lps: list[int]) -> int:
        """Return whole large pages one by one to this type's bookkeeping; returns their free slots."""
        k, free_in, used, carver, zeros, holes = (self.pages_per_large, self._free_in, self._used,
                                                  self.pool.carver, bytes(self.pages_per_large), 0)
        for lp in lps:
            used[lp * k:lp * k + k] = zeros
            carver[lp] = None
            if lp in free_in:  # only these can be open or have holes
                holes += len(free_in[lp])
                self._unlink(lp)
        return holes

    def _free_singles(self, pages: list[int]) -> None:
        """Free pages (checked) of a type whose small page is a whole large page: each goes back to the pool."""
        free_in = self._free_in
        used, carver = self._used, self.pool.carver
        for p in pages:
            used[p] = 0
            carver[p] = None
        if free_in:  # full open pages of `alloc` (alloc_each keeps none for this type)
            for lp in free_in.keys() & set(pages):
                self._unlink(lp)
        self.pool.free.extend(pages)
        self.pages_used -= len(pages)
        self.large_pages_carved -= len(pages)

    def _free_each(self, pages: list[int]) -> None:
        """Per-page free (pages checked): back on their large page's free list, which returns to the pool
        when all k slots are free."""
        k, used, free_in, opener = self.pages_per_large, self._used, self._free_in, self._opener
        for p in pages:
            used[p] = 0
            lp = p // k
            slots = free_in.get(lp)
            if slots is None:
                slots = free_in[lp] = []
            slots.append(p)
            if len(slots) == k:
                self._uncarve(lp)
            elif len(slots) == 1:
                (self._open_avail if lp in opener else self._avail)[lp] = None
        self.pages_used -= len(pages)
        self.pages_free_in_carved += len(pages)

    def _carve(self) -> int:
        return self._carve_many(1)[0]

    def _uncarve(self, lp: int) -> None:
        """Return a large page whose small pages are all free (its free list holds all k) to the pool."""
        self._unlink(lp)
        self.pages_free_in_carved -= self.pages_per_large
        self.large_pages_carved -= 1
        self.pool.carver[lp] = None
        self.pool.free.append(lp)

    def _unlink(self, lp: int) -> None:
        """Drop `lp`'s free list and its hole/open bookkeeping (it is leaving this type)."""
        del self._free_in[lp]
        self._avail.pop(lp, None)
        self._open_avail.pop(lp, None)
        owner = self._opener.pop(lp, None)
        if owner is not None:
            del self._open[owner], self._open_slots[owner]

    def _set_open(self, owner: int, lp: int) -> None:
        self.close_owner(owner)
        self._open[owner] = lp
        self._opener[lp] = owner
        self._open_slots[owner] = slots = self._free_in[lp]
        if slots:
            self._open_avail[lp] = None

    def _check_freeable(self, pages: list[int]) -> None:
        """Validate before mutating: every page in range, allocated and listed once (C-level gathers).
        Raises ValueError naming the first bad page."""
        used, n = self._used, len(pages)
        try:
            ok = n == 0 or (min(pages) >= 0 and (used[pages[0]] == 1 if n == 1 else
                                                 itemgetter(*pages)(used).count(1) == n == len(set(pages))))
        except IndexError:
            ok = False
        if not ok:
            raise ValueError(f"{self.name}: page {_first_bad(pages, used)} is not allocated (or freed twice in "
                             "one call)")


def _first_bad(pages: list[int], used: bytearray) -> int:
    """The first page of `pages` that is out of range, not allocated, or listed before."""
    seen: set[int] = set()
    for p in pages:
        if not 0 <= p < len(used) or used[p] != 1 or p in seen:
            return p
        seen.add(p)
    raise AssertionError("no bad page")


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
        return len(self.pool.free)

    def stats(self) -> AllocatorStats:
        """Counters for the adapter's stats endpoint. O(types)."""
        types = tuple(a.stats() for a in self.types)
        large = self.layout.large_page_bytes
        used = sum(t.bytes_used for t in types)
        wasted = sum(t.bytes_free_in_carved + t.bytes_padding for t in types)
        return AllocatorStats(self.pool.total, len(self.pool.free), large, self.pool.total * large, used,
                              wasted, types)

    def check_integrity(self) -> None:
        """Assert the pool and every type are consistent and free + carved large pages == total. O(pages)."""
        self.pool.check_integrity(len(self.types))
        carved = sum(a.large_pages_carved for a in self.types)
        assert carved + len(self.pool.free) == self.pool.total, "large pages lost or duplicated"
        for a in self.types:
            a.check_integrity()
