"""Two-level allocator: a common pool of large pages, carved by per-type small-page allocators.

Level 1 (`LargePagePool`): large pages 0..N-1, a LIFO stack of free ones. Level 2 (`SmallPageAllocator`, one per
type): a type carves a free large page into `pages_per_large` = k small pages (ids `lp*k .. lp*k+k-1`, see
layout.py) and hands the large page back to the pool the moment its last small page is freed.

Request-aware placement: each owner (request id) has an *open* large page per type and takes its pages from
there first. When that is full, the owner takes *holes* (free slots of carved large pages nobody has open, in the
order they appeared; its last one becomes its open page), else whole fresh large pages for each k pages it
still needs and one more, made its open page, for the rest. Under memory pressure (at most `low_water` free
large pages, default 1/64 of the pool) it takes free slots of other owners' open pages before carving, so
reserved tails do not strand memory. A request's pages of one type thus sit together and tend to free whole
large pages at once. Inside a large page the free slots form a stack: a fresh one hands out slots 0, 1, ...;
a freed slot goes on top (handed out next).

State is numpy arrays, so every operation is a fixed number of vectorised steps however many pages or owners
it covers: a flag per small page, a free-slot stack and count, carver and opener per large page, an open large
page per owner (indexed by owner id: owners are small integers >= -1, request ids or rows). A batch for many owners
(a prefill batch, a decode step) is one call, `alloc_many` / `alloc_each`, that runs the steps above for all
owners at once. Page ids go in and out as int64 arrays. `free`, `alloc_many` and `alloc_each` are atomic: an
`OutOfPagesError` or `ValueError` leaves the state untouched.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate, islice
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .layout import Layout, TypeLayout

Pages = npt.NDArray[np.int64]
EMPTY: Pages = np.empty(0, dtype=np.int64)


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


def as_pages(pages: Iterable[int] | Pages) -> Pages:
    """Page ids as an int64 array (no copy if they already are one; a list goes through `array`, the fastest
    route from Python ints)."""
    if type(pages) is np.ndarray and pages.dtype == np.int64:
        return pages
    if isinstance(pages, np.ndarray):
        return pages.astype(np.int64, copy=False)
    ids = array("q", pages)
    return np.frombuffer(ids, dtype=np.int64) if len(ids) else EMPTY


def all_distinct(values: Pages, scratch: Pages) -> bool:
    """Whether no value is listed twice, with `scratch` (an int64 array indexable by every value): scatter each
    one's position, gather back; a repeated value reads a later position. Four array steps."""
    idx = np.arange(len(values))
    scratch[values] = idx
    return bool((scratch[values] == idx).all())


def _expand(base: Pages, lengths: Pages, step: int = 1) -> Pages:
    """Runs base[i], base[i] + step, ... (lengths[i] values each), concatenated. Example: base [10, 20, 30],
    lengths [2, 0, 3] -> [10, 11, 30, 31, 32]; step -1 -> [10, 9, 30, 29, 28]. Four array steps."""
    ends = np.cumsum(lengths)
    out: Pages = np.repeat(base - step * (ends - lengths), lengths) + step * np.arange(ends[-1] if len(ends) else 0)
    return out


class LargePagePool:
    """The common pool: a LIFO stack of free large pages and `carver[lp]`, the index of the type that carved
    `lp` (-1 while it is free).

    `low_water`: while at most this many large pages are free, owners fill other owners' open large pages
    before carving new ones (request-aware placement yields to memory pressure).
    """

    def __init__(self, num_large_pages: int, low_water: int = 0) -> None:
        if num_large_pages < 0 or low_water < 0:
            raise ValueError("num_large_pages and low_water must be >= 0")
        self.total = num_large_pages
        self.low_water = low_water
        self._stack = np.arange(num_large_pages - 1, -1, -1, dtype=np.int64)  # [:num_free], top last
        self.num_free = num_large_pages
        self.carver = np.full(num_large_pages, -1, dtype=np.int64)

    @property
    def free(self) -> list[int]:
        """The free large pages, bottom of the stack first (the last one is handed out next). A copy."""
        return self._stack[:self.num_free].tolist()  # type: ignore[no-any-return]

    def pop(self, count: int) -> Pages:
        """Take `count` free large pages, the top of the stack first (caller checked there are enough)."""
        self.num_free -= count
        return self._stack[self.num_free:self.num_free + count][::-1].copy()

    def push(self, lps: Pages) -> None:
        """Give back large pages; the last one is handed out next."""
        self._stack[self.num_free:self.num_free + len(lps)] = lps
        self.num_free += len(lps)

    def check_integrity(self, num_types: int) -> None:
        free = self._stack[:self.num_free]
        assert len(np.unique(free)) == self.num_free, "large page on the free list twice"
        assert ((self.carver == -1) == np.isin(np.arange(self.total), free)).all(), "carver vs free list"
        assert ((self.carver >= -1) & (self.carver < num_types)).all()


class SmallPageAllocator:
    """Small pages of one type. Mutated only through `alloc*`, `free`, `close_owner`.

    Arrays (L large pages, k small pages each; index L of the per-large-page arrays is "no page" and stays
    zero, so a gather through an owner without an open page reads 0):
      _used[p]        small page p is allocated (also as `_used2d[lp, slot]`)
      _nfree[lp]      free slots of lp while this type has it carved, else 0
      _stack[lp, :_nfree[lp]]  the page ids of those free slots; the last one is handed out next
      _opener[lp]     owner + 1 of the owner whose open page lp is, 0 if none
      _open_of[o + 1] owner o's open large page, L if none (grows with the largest owner id seen)
    `_holes`: carved large pages with free slots that nobody has open, in the order they became holes.
    """

    def __init__(self, pool: LargePagePool, type_index: int, geometry: TypeLayout) -> None:
        self.pool = pool
        self.type_index = type_index
        self.geometry = geometry
        self.name = geometry.name
        self.pages_per_large = k = geometry.pages_per_large
        self.pages_used = 0
        self.pages_free_in_carved = 0
        self.large_pages_carved = 0
        L = pool.total
        self._used = np.zeros(L * k, dtype=np.bool_)
        self._used2d = self._used.reshape(L, k)
        self._nfree = np.zeros(L + 1, dtype=np.int64)
        self._stack = np.zeros((L + 1, k), dtype=np.int64)
        self._fresh_row = np.arange(k - 1, -1, -1, dtype=np.int64)  # slots of a fresh stack: slot 0 on top
        self._ids = np.arange(L * k, dtype=np.int64)  # every page id, to copy runs from
        self._ids2d = self._ids.reshape(L, k)
        self._opener = np.zeros(L + 1, dtype=np.int64)
        self._open_of = np.full(64, L, dtype=np.int64)
        self._mark = np.zeros(64, dtype=np.int64)  # scratch for the repeated-owner check
        self._lp_mark = np.zeros(L, dtype=np.int64)  # scratch for the one-page-per-large-page check
        self._holes: dict[int, None] = {}

    @property
    def num_pages(self) -> int:
        """Small pages this type could hold if it carved every large page."""
        return len(self._used)

    def available(self) -> int:
        """Pages `alloc` can return now: free slots in carved large pages + free large pages * k. O(1)."""
        return self.pages_free_in_carved + self.pool.num_free * self.pages_per_large

    def is_used(self, page: int) -> bool:
        return bool(self._used[page])

    @property
    def used_flags(self) -> npt.NDArray[np.bool_]:
        """One flag per small page, True while allocated. Read-only for callers (fast bulk checks)."""
        return self._used

    def used_in_large(self, large_page: int) -> int:
        """Used small pages of this type inside `large_page` (0 if this type has not carved it). O(1)."""
        if self.pool.carver[large_page] != self.type_index:
            return 0
        return self.pages_per_large - int(self._nfree[large_page])

    # ------------------------------------------------------------------------------------------ alloc
    def alloc(self, num_pages: int, owner: int) -> Pages:
        """`num_pages` page ids for `owner`, placed request-aware (module docstring). Raises OutOfPagesError
        (nothing allocated) if fewer are available."""
        return self.alloc_many(np.array([num_pages]), np.array([owner]))

    def alloc_each(self, owners: Sequence[int] | Pages) -> Pages:
        """One page per owner, in order (a decode step). Raises OutOfPagesError, nothing allocated. Owners
        (listed once) whose open large page is full adopt holes, then fresh large pages, as `alloc_many`
        would place them; then every owner takes the top of its open page's stack: one gather chain."""
        keys = as_pages(owners) + 1
        try:
            lps = self._open_of[keys]  # IndexError: an owner never seen (alloc_many grows the array)
        except IndexError:
            lps = EMPTY
        if len(lps) and self._distinct(keys):
            nfree = self._nfree[lps]
            if nfree.all() or self._reopen(keys, lps, nfree):
                nfree -= 1
                pages: Pages = self._stack[lps, nfree]
                self._used[pages] = True
                self._nfree[lps] = nfree
                self.pages_used += len(pages)
                self.pages_free_in_carved -= len(pages)
                return pages
        return self.alloc_many(np.ones(len(keys), dtype=np.int64), keys - 1)

    def _reopen(self, keys: Pages, lps: Pages, nfree: Pages) -> bool:
        """Give each owner whose open page is full (nfree 0) a new one, holes first, then fresh large pages;
        update `lps` and `nfree` in place. False, changing nothing, if that would take the pool below
        `low_water` (then placement under pressure applies)."""
        idx = np.flatnonzero(nfree == 0)
        m = min(len(idx), len(self._holes))
        if self.pool.num_free - self.pool.low_water < len(idx) - m:
            return False
        new = self._carve(len(idx) - m)
        if m:
            holes = np.fromiter(islice(self._holes, m), dtype=np.int64, count=m)
            for lp in holes.tolist():
                del self._holes[lp]
            new = np.concatenate((holes, new))
        self._set_open(keys[idx], new)
        lps[idx] = new
        nfree[idx] = self._nfree[new] if m else self.pages_per_large
        return True

    def _carve(self, count: int) -> Pages:
        """`count` fresh large pages with every slot free (on their stacks, slot 0 on top)."""
        lps = self.pool.pop(count)
        self.pool.carver[lps] = self.type_index
        self._nfree[lps] = self.pages_per_large
        self._stack[lps] = lps[:, None] * self.pages_per_large + self._fresh_row
        self.large_pages_carved += count
        self.pages_free_in_carved += count * self.pages_per_large
        return lps

    def alloc_many(self, counts: Sequence[int] | Pages, owners: Sequence[int] | Pages) -> Pages:
        """`counts[i]` pages for `owners[i]`, concatenated in order: what serving the owners one after the other
        gives (module docstring), in a fixed number of array steps when the owners are distinct. Raises
        OutOfPagesError, nothing allocated, if they do not all fit. O(pages + owners) array work."""
        counts, keys = as_pages(counts), as_pages(owners) + 1
        total = int(counts.sum())
        if total > self.available():
            raise OutOfPagesError(self.name, total, self.available())
        if total == 0:
            return EMPTY.copy()
        if keys.min() < 0:
            raise ValueError(f"{self.name}: owner ids must be >= -1")
        if keys.max() >= len(self._open_of):
            self._grow(int(keys.max()))
        if not self._distinct(keys):  # the same owner twice: serve them one after the other
            return np.concatenate([self.alloc_many(counts[i:i + 1], keys[i:i + 1] - 1) for i in range(len(keys))])
        pages = None
        if not self._holes and not self._nfree[self._open_of[keys]].any():  # e.g. a batch of new requests
            pages = self._fresh(keys, counts, self.pool.low_water)
        if pages is None:
            pages = np.empty(total, dtype=np.int64)
            start, done = counts.cumsum() - counts, np.zeros(len(keys), dtype=np.int64)
            need = counts - self._from_open(keys, counts, pages, start, done)
            if need.any() and self._holes:
                need -= self._from_holes(keys, need, pages, start, done)
            if need.any():
                self._from_pool(keys, need, pages, start, done)
        self.pages_used += total
        return pages

    def _from_open(self, keys: Pages, counts: Pages, out: Pages, start: Pages, done: Pages) -> Pages:
        """Step 1: each owner's pages from its open large page. Returns pages taken per owner."""
        lps = self._open_of[keys]
        take = np.minimum(counts, self._nfree[lps])
        if take.any():
            got = take > 0
            self._put(out, start[got] + done[got], take[got], self._take(lps[got], take[got]))
            done += take
        return take

    def _from_holes(self, keys: Pages, need: Pages, out: Pages, start: Pages, done: Pages) -> Pages:
        """Step 2: owners that still need pages take holes in order, each until it has enough; an owner's
        last hole becomes its open page and the next owner starts at the next hole. Returns pages taken per
        owner."""
        holes = np.fromiter(self._holes, dtype=np.int64, count=len(self._holes))
        free = self._nfree[holes]
        who = np.flatnonzero(need)
        if need[who].max() == 1:  # one page each (a decode step): needy owner i adopts hole i
            who = who[:len(holes)]
            last = np.arange(len(who))
        else:
            who, last = _hole_ends(who, need, free)
        used = holes[:last[-1] + 1]
        take = free[:last[-1] + 1].copy()
        ends = np.cumsum(take)
        in_span = ends[last] - np.concatenate(([0], ends[last[:-1]]))  # free slots of each owner's holes
        got = np.minimum(need[who], in_span)
        take[last] -= in_span - got  # an owner's last hole gives only what it still needs
        self._put(out, start[who] + done[who], got, self._take(used, take))
        took = np.zeros(len(keys), dtype=np.int64)
        took[who] = got
        done += took
        for lp in used.tolist():
            del self._holes[lp]
        self._set_open(keys[who], holes[last])
        return took

    def _from_pool(self, keys: Pages, need: Pages, out: Pages, start: Pages, done: Pages) -> None:
        """Step 3: fresh large pages (`_fresh`); under memory pressure (`low_water`) owner by owner, other
        owners' open pages first."""
        who = np.flatnonzero(need)
        pages = self._fresh(keys[who], need[who], self.pool.low_water)
        if pages is not None:
            self._put(out, start[who] + done[who], need[who], pages)
            return
        k, pool = self.pages_per_large, self.pool
        for i in who.tolist():
            key, n, pos = keys[i:i + 1], int(need[i]), int(start[i] + done[i])
            while n:
                lp = None if pool.num_free > pool.low_water else self._borrowable()
                if lp is None:  # above low water, or nothing to borrow: fresh large pages
                    floor = pool.low_water if pool.num_free > pool.low_water else 0
                    m = min(n, (pool.num_free - floor) * k)
                    got = self._fresh(key, np.array([m]), floor)
                else:
                    m = min(n, int(self._nfree[lp]))
                    got = self._take(np.array([lp]), np.array([m]))
                assert got is not None
                out[pos:pos + m] = got
                n, pos = n - m, pos + m

    def _fresh(self, keys: Pages, need: Pages, floor: int) -> Pages | None:
        """Carve need // k whole large pages per owner and, for need % k > 0, one more made its open page
        (their old ones are full); their pages in owner order. None, changing nothing, if that would leave
        fewer than `floor` free large pages. The flags are set row by row (an open page's first need % k
        slots), and the pages are the flagged ids of those rows in order; large pages that come off the pool
        as a few ascending runs (the usual case: frees push them back lowest on top) are sliced, not
        gathered."""
        k = self.pages_per_large
        whole, rest = np.divmod(need, k)
        opened = rest > 0
        ends = (whole + opened).cumsum()
        count = int(ends[-1])
        if self.pool.num_free - floor < count:
            return None
        lps = self.pool.pop(count)
        opens, rest = lps[ends[opened] - 1], rest[opened]
        runs = _ascending_runs(lps)
        if runs is None:
            self._used2d[lps] = True
            self._used2d[opens] = self._fresh_row[::-1] < rest[:, None]  # slots 0 .. rest-1
            pages: Pages = self._ids2d[lps][self._used2d[lps]]
            self.pool.carver[lps] = self.type_index
            self._nfree[lps] = 0
        else:
            for run in runs:
                self._used2d[run] = True
                self.pool.carver[run] = self.type_index
                self._nfree[run] = 0
            self._used2d[opens] = self._fresh_row[::-1] < rest[:, None]
            chunks = [self._ids2d[run][self._used2d[run]] for run in runs]
            pages = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        self._nfree[opens] = k - rest
        self._stack[opens] = opens[:, None] * k + self._fresh_row
        self._set_open(keys[opened], opens)
        self.large_pages_carved += count
        self.pages_free_in_carved += k * count - len(pages)
        return pages

    def _take(self, rows: Pages, take: Pages) -> Pages:
        """The top take[i] free slots of each (distinct, carved) large page rows[i], row after row, as
        allocated page ids."""
        k, nfree = self.pages_per_large, self._nfree[rows]
        top = rows * k + nfree - 1  # index of each stack's top in the flattened stacks
        where = _expand(top, take, -1)
        pages: Pages = self._stack.ravel()[where]
        self._used[pages] = True
        self._nfree[rows] = nfree - take
        self.pages_free_in_carved -= len(pages)
        return pages

    @staticmethod
    def _put(out: Pages, pos: Pages, lengths: Pages, pages: Pages) -> None:
        """Write consecutive chunks of `pages`, lengths[i] long, at out[pos[i]:]."""
        if len(pages) == len(out):  # every owner's pages come from this step
            out[:] = pages
        else:
            out[_expand(pos, lengths)] = pages

    def _set_open(self, keys: Pages, lps: Pages) -> None:
        """Make lps[i] the open page of owner keys[i] - 1 (its old open page, if any, is full)."""
        self._opener[self._open_of[keys]] = 0
        self._open_of[keys] = lps
        self._opener[lps] = keys

    def _borrowable(self) -> int | None:
        """Some owner's open large page with free slots (the lowest id), if any. O(large pages)."""
        found = np.flatnonzero((self._opener[:-1] > 0) & (self._nfree[:-1] > 0))
        return int(found[0]) if len(found) else None

    def _grow(self, max_key: int) -> None:
        if max_key >= len(self._open_of):
            size = max(2 * len(self._open_of), max_key + 1)
            self._open_of = np.concatenate([self._open_of, np.full(size - len(self._open_of), self.pool.total)])
            self._mark = np.zeros(size, dtype=np.int64)

    def _distinct(self, keys: Pages, scratch: Pages | None = None) -> bool:
        """Whether no owner key (or large page, with scratch `_lp_mark`) is listed twice (`all_distinct`)."""
        return len(keys) < 2 or all_distinct(keys, self._mark if scratch is None else scratch)

    # ------------------------------------------------------------------------------------------ free
    def free(self, pages: Iterable[int] | Pages) -> int:
        """Free `pages`; returns how many large pages went back to the pool (pushed so the lowest is handed
        out next). Raises ValueError, freeing nothing, if a page is not allocated or listed twice. A free of
        one page per large page (a decode step, a window release) pushes each on its stack; a bulk free
        counts pages per large page and rebuilds the stacks of those that stay carved. Array passes over
        the pages only; the rest is per large page touched."""
        pages = as_pages(pages)
        if not len(pages):
            return 0
        k, used = self.pages_per_large, self._used
        lp = pages // k
        lo = int(lp.min())
        if lo < 0 or lp.max() >= self.pool.total or not used[pages].all():
            raise ValueError(f"{self.name}: page {_first_bad(pages, used)} is not allocated")
        # one page per large page? (not asked when the first two share one, as a request's bulk free does)
        if (len(lp) < 2 or lp[0] != lp[1]) and self._distinct(lp, self._lp_mark):
            touched, before = lp, self._nfree[lp]
            self._stack[lp, before] = pages
            used[pages] = False
            after = before + 1
            self._nfree[lp] = after
        else:
            counts = np.bincount(lp - lo)
            touched = np.flatnonzero(counts)
            freed = counts[touched]
            touched += lo
            before = self._nfree[touched]
            used[pages] = False
            if np.count_nonzero(self._used2d[touched]) != k * len(touched) - int(before.sum()) - len(pages):
                used[pages] = True  # fewer flags cleared than pages listed: a page listed twice
                raise ValueError(f"{self.name}: page {_first_bad(pages, used)} freed twice in one call")
            after = before + freed
            stays = after < k
            self._restack(touched[stays], after[stays])
        self.pages_used -= len(pages)
        self.pages_free_in_carved += len(pages)
        empty = after == k
        if empty.any():
            self._uncarve(touched[empty], before[empty])
            touched, before = touched[~empty], before[~empty]
        holes = touched[(before == 0) & (self._opener[touched] == 0)]
        if len(holes):
            self._holes.update(dict.fromkeys(holes.tolist()))
        return int(empty.sum())

    def _restack(self, lps: Pages, nfree: Pages) -> None:
        """Rebuild the stacks of large pages `lps` from their flags, lowest free slot on top (a stable sort of
        each row, slots downwards, puts the free ones first), and set their free counts to `nfree`."""
        k = self.pages_per_large
        slots = k - 1 - np.argsort(self._used2d[lps][:, ::-1], axis=1, kind="stable")
        self._stack[lps] = lps[:, None] * k + slots
        self._nfree[lps] = nfree

    def _uncarve(self, lps: Pages, before: Pages) -> None:
        """Return large pages whose small pages are now all free to the pool."""
        openers = self._opener[lps]
        self._open_of[openers[openers > 0]] = self.pool.total
        for lp in lps[(before > 0) & (openers == 0)].tolist():  # they were holes
            del self._holes[lp]
        self._opener[lps] = 0
        self._nfree[lps] = 0
        self.pool.carver[lps] = -1
        self.pages_free_in_carved -= self.pages_per_large * len(lps)
        self.large_pages_carved -= len(lps)
        self.pool.push(lps[::-1])

    def close_owner(self, owner: int) -> None:
        """Forget `owner`'s open large page (call when the request finishes); its free slots become holes."""
        key = owner + 1
        if 0 <= key < len(self._open_of):
            lp = int(self._open_of[key])
            if lp != self.pool.total:
                self._open_of[key] = self.pool.total
                self._opener[lp] = 0
                if self._nfree[lp]:
                    self._holes[lp] = None

    def stats(self) -> TypeStats:
        g = self.geometry
        return TypeStats(self.name, self.pages_used, self.pages_free_in_carved, self.large_pages_carved,
                         self.pages_used * g.page_bytes, self.pages_free_in_carved * g.page_bytes,
                         self.pages_used * g.padding_bytes_per_page)

    def check_integrity(self) -> None:
        """Assert: used + free slots == k per carved large page and nothing used or counted elsewhere,
        counters match, holes are exactly the carved, not open large pages with free slots, open pages and
        owners agree. O(pool)."""
        k, L, name = self.pages_per_large, self.pool.total, self.name
        carved = self.pool.carver == self.type_index
        used_per = self._used2d.sum(1)
        nfree = self._nfree[:L]
        assert self._nfree[L] == 0 and self._opener[L] == 0, f"{name}: the no-page entries changed"
        assert int(carved.sum()) == self.large_pages_carved, f"{name}: carved count"
        assert (used_per[carved] + nfree[carved] == k).all(), f"{name}: used + free != k in a carved page"
        assert not used_per[~carved].any() and not nfree[~carved].any(), f"{name}: pages outside carved ones"
        assert int(used_per.sum()) == self.pages_used, f"{name}: used count"
        assert int(nfree.sum()) == self.pages_free_in_carved, f"{name}: free-in-carved count"
        rows = np.flatnonzero(carved)
        where = _expand(rows * k, nfree[rows])
        ids = self._stack.ravel()[where]
        assert (ids // k == where // k).all(), f"{name}: a stack lists a page of another large page"
        listed = np.zeros(L * k, dtype=np.int64)
        np.add.at(listed, ids, 1)
        assert (listed == ~self._used & carved.repeat(k)).all(), f"{name}: a stack is not its page's free slots"
        opener = self._opener[:L]
        assert set(self._holes) == set(np.flatnonzero(carved & (nfree > 0) & (opener == 0)).tolist()), \
            f"{name}: holes"
        assert not opener[~carved].any(), f"{name}: an uncarved page is open"
        keys = np.flatnonzero(self._open_of != L)
        assert (opener[self._open_of[keys]] == keys).all(), f"{name}: open page vs owner"
        assert len(keys) == int((opener > 0).sum()), f"{name}: an open page without its owner"


def _ascending_runs(lps: Pages, most: int = 16) -> list[slice] | None:
    """`lps` as consecutive ascending runs (slices of large-page ids), or None if there are more than `most`.
    Example: [4, 5, 6, 1, 2] -> [slice(4, 7), slice(1, 3)]."""
    cuts = np.flatnonzero(lps[1:] != lps[:-1] + 1)
    if len(cuts) >= most:
        return None
    bounds = [0, *(cuts + 1).tolist(), len(lps)]
    starts = lps[bounds[:-1]].tolist()
    return [slice(a, a + b - c) for a, b, c in zip(starts, bounds[1:], bounds[:-1], strict=True)]


def _hole_ends(who: Pages, need: Pages, free: Pages) -> tuple[Pages, Pages]:
    """Needy owners `who` take holes (with `free` slots each, in order) one after the other, each until it has
    `need` pages: the owners served before the holes run out and the index of each one's last hole."""
    ends, lasts, base, h = list(accumulate(free.tolist())), list[int](), 0, 0
    for n in need[who].tolist():
        if h == len(ends):
            break
        e = min(bisect_left(ends, base + n, h), len(ends) - 1)
        lasts.append(e)
        base, h = ends[e], e + 1
    return who[:len(lasts)], np.array(lasts, dtype=np.int64)


def _first_bad(pages: Pages, used: npt.NDArray[np.bool_]) -> int:
    """The first page of `pages` that is out of range, not allocated, or listed before."""
    seen: set[int] = set()
    for p in pages.tolist():
        if not 0 <= p < len(used) or not used[p] or p in seen:
            return int(p)
        seen.add(p)
    raise AssertionError("no bad page")


class TwoLevelAllocator:
    """All types' small-page allocators over one common pool of `num_large_pages` large pages. Its by-name
    methods take and return page ids as Python lists; the per-type allocators (`of`) use int64 arrays."""

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
        return self._by_name[name].alloc(num_pages, owner).tolist()  # type: ignore[no-any-return]

    def alloc_each(self, name: str, owners: Sequence[int]) -> list[int]:
        """See SmallPageAllocator.alloc_each."""
        return self._by_name[name].alloc_each(owners).tolist()  # type: ignore[no-any-return]

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
