"""Request-level KV manager: every running request's pages, the one "does it fit" decision, eviction.

The role vLLM v1's KVCacheManager + coordinator play there. An engine (sglang's scheduler through the adapter,
or the trace replay in bench/) decides which requests run; this object decides where their pages go and
whether a demand fits, over one `TwoLevelAllocator` and one `TypedRadixTree`:

  fits(demand)              THE capacity question: `demand` is pages per type; each type first fills the free
                            small pages of large pages it has carved, the rest takes whole free large pages,
                            which all types share (`large_pages_needed`).
  make_room(demand)         evict (in the evictor's order) until `fits(demand)`.
  open(rid, key, start)     a request record: its placement owner (its own id, so its pages sit together and
                            free whole large pages; state pages share one owner), its own pages, its lock.
  match / lock              the longest prefix every type can serve; lock it for the request.
  alloc / alloc_tokens      pages for a prefill chunk at the request's next positions (all token types at once).
  alloc_step(rids)          one decode step: one page per request per token type (in the records from the
                            next call that reads them: `record_steps`).
  free(name, pages)         pages requests give back (sglang's out-of-window slots, leftovers, retraction).
  release_window(rid, L)    free the request's own pages no later step reads once L tokens are computed, and
                            its lock on the cached prefix's window once past it.
  cache(rid, tokens)        hand the request's pages of tokens [0, n) to the tree; its own pages start at n.
  close(rid)                free what the request still holds, unlock, forget its owner (finish, abort, retract).

A page a request holds is recorded in `_rid[t][page]` (and for token types its position in `_pos[t][page]`),
so frees that arrive as bare page ids (sglang frees slots, not requests) find their request. Every page in
use is either cached by the tree or held by exactly one request: `check_integrity()` asserts it. Positions
are page indices of the request's sequence (tokens at one token per page).

Costs: fits O(types); alloc and free O(pages) (C-level gathers where possible); close O(pages held).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

from .allocator import OutOfPagesError, SmallPageAllocator, TwoLevelAllocator
from .layout import Layout
from .nodes import EvictResult, InsertResult, LockHandle, MatchResult, Node
from .radix import TypedRadixTree
from .specs import PageKind, ceil_div

NOT_HELD = -1
# Placement owner of every state page: a request holds one state at a time (its checkpoint copies go to the
# tree), so there is nothing to place together, and an open large page per request would strand the other
# state slots of it (a new request's state would carve a fresh large page that `plan` did not count).
STATE_OWNER = -1


class CapacityPlan(NamedTuple):
    """What a demand needs from the common pool: whole large pages beyond each type's free carved slots."""

    large_pages_needed: int
    large_pages_free: int

    @property
    def fits(self) -> bool:
        return self.large_pages_needed <= self.large_pages_free


class HeldPages(NamedTuple):
    """Pages one request holds outside the tree, per type name (token types: by position, None released)."""

    start_tokens: int
    pages: dict[str, list[int | None]]


class BatchPart(NamedTuple):
    """One request's share of a batch allocation (`alloc_batch`): `num_tokens` positions of every token type
    at its next positions, plus `extra_pages` of other types (e.g. {"cross": encoder pages}). A request not
    open yet is opened with its own token pages starting at position `start_tokens`; one that holds no token
    page yet (a state page only) moves its start there."""

    rid: int
    num_tokens: int
    start_tokens: int = 0
    extra_pages: Mapping[str, int] | None = None


class _Request:
    """A request's record. `pages[t]`: token types, the page of each position from `start` on (None once
    released); state and encoder types, the pages it holds. `released[t]`: own positions below it are freed."""

    __slots__ = ("rid", "key", "start", "pages", "released", "handle")

    def __init__(self, rid: int, key: Hashable, start: int, num_types: int) -> None:
        self.rid = rid
        self.key = key
        self.start = start
        self.pages: list[list[int | None]] = [[] for _ in range(num_types)]
        self.released = [0] * num_types
        self.handle: LockHandle | None = None


class KVCacheManager:
    """Pages of every running request plus the prefix cache, over one pool of `num_large_pages` large pages.

    `on_evict` listeners are called with every `EvictResult` of an eviction this manager runs (the adapter
    unpairs sglang's slot mappings there)."""

    def __init__(self, layout: Layout, num_large_pages: int, low_water: int | None = None) -> None:
        self.layout = layout
        self.names = layout.type_names
        self.allocator = TwoLevelAllocator(layout, num_large_pages, low_water)
        self.tree = TypedRadixTree(self.allocator)
        self.on_evict: list[Callable[[EvictResult], None]] = []
        self._index = {n: i for i, n in enumerate(self.names)}
        self._kinds = tuple(t.kind for t in layout.types)
        self.token_types = tuple(n for n, k in zip(self.names, self._kinds, strict=True) if k is PageKind.TOKENS)
        self._token_idx = tuple(self._index[n] for n in self.token_types)
        self._token_allocators = tuple(self.allocator.types[t] for t in self._token_idx)
        self._windowed = tuple(t for t in self._token_idx if not self.tree.policies[t].leaf_only)
        self._reqs: dict[int, _Request] = {}
        self._rid = [[NOT_HELD] * a.num_pages for a in self.allocator.types]
        self._pos = [[NOT_HELD] * a.num_pages if k is PageKind.TOKENS else [] for a, k in
                     zip(self.allocator.types, self._kinds, strict=True)]
        # Decode steps whose pages are not in the records yet ((rids, pages per token type) each; `record_steps`),
        # and the rids of the last step made (open, distinct, holding token pages) with no other call since.
        self._journal: list[tuple[list[int], list[list[int]]]] = []
        self._steady: list[int] | None = None

    # ------------------------------------------------------------------------------------------ capacity
    def plan(self, demand: Mapping[str, int]) -> CapacityPlan:
        """Large pages `demand` (pages per type, allocated at once) needs beyond the types' free carved slots.
        Example: k = 5 full pages per large page, 3 free in carved ones; 9 full pages need ceil(6/5) = 2."""
        return CapacityPlan(self._large_pages_needed(demand), self.allocator.large_pages_free)

    def _large_pages_needed(self, demand: Mapping[str, int]) -> int:
        needed, of = 0, self.allocator.of
        for name, pages in demand.items():
            small = of(name)
            rest = pages - small.pages_free_in_carved
            if rest > 0:
                needed += ceil_div(rest, small.pages_per_large)
        return needed

    def fits(self, demand: Mapping[str, int], extra_large_pages: int = 0) -> bool:
        """Whether `demand` can be allocated at once now (with `extra_large_pages` more free large pages,
        e.g. what eviction could free). The one capacity decision; everything else asks it. O(types)."""
        return self._large_pages_needed(demand) <= self.allocator.large_pages_free + extra_large_pages

    def fits_empty(self, demand: Mapping[str, int]) -> bool:
        """Whether `demand` would fit the pool if nothing were allocated."""
        need = sum(ceil_div(n, self.layout.type(name).pages_per_large) for name, n in demand.items())
        return need <= self.allocator.pool.total

    def largest_fitting(self, names: Sequence[str], limit: int, fits: Callable[[dict[str, int]], bool]
                        | None = None) -> int:
        """Largest n <= limit with `fits({name: n for name in names})` (default: `self.fits`), by binary
        search (fits is monotone in n)."""
        check = fits or self.fits
        lo, hi = 0, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if check(dict.fromkeys(names, mid)):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def evictable_large_pages(self, names: Iterable[str] | None = None) -> int:
        """Large pages that evicting every unlocked cached page (of `names`, default all types) would free at
        least: per type those it has carved less one for each of its pages that stays (a lower bound: staying
        pages may sit in different large pages). O(types)."""
        total = 0
        for t in (self._index[n] for n in names) if names is not None else range(len(self.names)):
            a = self.allocator.types[t]
            staying = a.pages_used - (self.tree.cached_pages[t] - self.tree.locked_pages[t])
            total += max(0, a.large_pages_carved - staying)
        return total

    def evictable_estimate(self) -> int:
        """Large pages' worth of unlocked cached bytes (evictable bytes // large-page bytes): what eviction
        frees if the cached pages sit together, as sglang's PrefillAdder counts evictable tokens. Optimistic:
        an allocation admitted on it can still fall short (then the caller backs out)."""
        return self.tree.stats().evictable_bytes // self.layout.large_page_bytes

    def make_room(self, demand: Mapping[str, int]) -> bool:
        """Evict until `demand` fits (or nothing evictable is left); returns whether it fits."""
        if self.fits(demand):
            return True
        self.evict_until(lambda freed: self.fits(demand))
        return self.fits(demand)

    def evict_until(self, done: Callable[[Sequence[int]], bool]) -> EvictResult:
        """Evict until `done(pages freed per type)` holds (TypedRadixTree.evict_until); tells `on_evict`."""
        result = self.tree.evict_until(done)
        self._notify(result)
        return result

    def evict_all(self) -> EvictResult:
        return self.evict_until(lambda freed: False)

    def reset_tree(self) -> None:
        """Evict every cached page and start an empty tree (sglang's flush). Requests keep their records."""
        self.evict_all()
        self.tree = TypedRadixTree(self.allocator)

    def _notify(self, result: EvictResult) -> None:
        if result.pages:
            for listener in self.on_evict:
                listener(result)

    # ------------------------------------------------------------------------------------------ requests
    def open(self, rid: int, key: Hashable = None, start: int = 0) -> None:
        """Start a record for request `rid` (>= 0) whose own token pages begin at position `start` (the end of
        its cached prefix). Raises ValueError if `rid` is open."""
        if rid < 0 or rid in self._reqs:
            raise ValueError(f"request {rid} is already open (or negative)")
        self._reqs[rid] = _Request(rid, key, start, len(self.names))

    def is_open(self, rid: int) -> bool:
        return rid in self._reqs

    def held(self, rid: int) -> HeldPages:
        """What `rid` holds outside the tree (a copy)."""
        self.record_steps()
        r = self._reqs[rid]
        return HeldPages(r.start, {n: list(r.pages[t]) for t, n in enumerate(self.names)})

    def open_requests(self) -> list[int]:
        return list(self._reqs)

    def locked_node(self, rid: int) -> Node | None:
        """The node the request's lock ends at (None: no lock)."""
        handle = self._reqs[rid].handle
        return handle.node if handle is not None else None

    def locked_types(self, rid: int) -> set[str]:
        """Types whose cached pages the request's lock still protects."""
        handle = self._reqs[rid].handle
        if handle is None:
            return set()
        return {n for n, tag in zip(self.names, handle.tags, strict=True) if tag is not None}

    def match(self, tokens: Sequence[int], key: Hashable = None) -> MatchResult:
        """The longest prefix of `tokens` every type can serve under `key` (TypedRadixTree.match); no lock."""
        return self.tree.match(tokens, key)

    def lock(self, rid: int, node: Node | None) -> None:
        """Make `node` the request's locked prefix (releasing the previous one); None only unlocks."""
        r = self._reqs[rid]
        new = self.tree.lock(node) if node is not None else None
        if r.handle is not None:
            self.tree.unlock(r.handle)
        r.handle = new

    def release_type(self, rid: int, name: str) -> None:
        """Drop the request's lock on type `name` early (its cached pages become evictable)."""
        handle = self._reqs[rid].handle
        if handle is not None:
            self.tree.release_type(handle, name)

    def alloc(self, rid: int, name: str, num_pages: int, *, evict: bool = False) -> list[int]:
        """`num_pages` pages of `name` for `rid` (token types: at its next positions), placed with its other
        pages. With `evict`, makes room first. Raises OutOfPagesError, allocating nothing, if they do not fit."""
        if evict:
            self.make_room({name: num_pages})
        self.record_steps()
        r, t = self._reqs[rid], self._index[name]
        owner = STATE_OWNER if self._kinds[t] is PageKind.STATE else rid
        pages = self.allocator.types[t].alloc(num_pages, owner)
        self._hold(r, t, pages)
        return pages

    def alloc_tokens(self, rid: int, num_tokens: int, *, evict: bool = False) -> dict[str, list[int]]:
        """`num_tokens` positions of every token type for `rid` at once (a prefill chunk). Raises
        OutOfPagesError, allocating nothing, if they do not fit together."""
        demand = dict.fromkeys(self.token_types, num_tokens)
        if evict:
            self.make_room(demand)
        self.record_steps()
        got = self._joint(lambda a: a.alloc(num_tokens, rid), demand)
        r = self._reqs[rid]
        for t, ps in zip(self._token_idx, got, strict=True):
            self._hold(r, t, ps)
        return dict(zip(self.token_types, got, strict=True))

    def alloc_step(self, rids: Sequence[int], *, evict: bool = False) -> dict[str, list[int]]:
        """One decode step: a page of every token type for each request of `rids` (distinct, open), in order.
        Raises OutOfPagesError, allocating nothing, if they do not fit together; ValueError (KeyError if a
        request is not open), allocating nothing, on a malformed step.

        The pages go into the requests' records at the next call that reads them (`record_steps`): consecutive
        steps of one batch, with nothing else in between, touch only the allocator, and their records are
        written together, while the records are warm (a decode step between two CPU forwards otherwise spends
        most of its time fetching them). A step that lists the requests of the last step, with nothing else
        since, skips the checks."""
        checked = self._steady if rids == self._steady else self._check_step(rids)
        demand = dict.fromkeys(self.token_types, len(rids))
        if evict:
            self.make_room(demand)
        got = self._joint(lambda a: a.alloc_each(rids), demand)
        self._journal.append((checked, got))
        self._steady = checked  # each of them holds a token page now
        return dict(zip(self.token_types, got, strict=True))

    def _check_step(self, rids: Sequence[int]) -> list[int]:
        for rid in rids:
            if rid not in self._reqs:
                raise KeyError(rid)
        if len(set(rids)) != len(rids):
            raise ValueError(f"a decode step lists a request twice: {sorted(rids)}")
        return list(rids)

    def record_steps(self) -> None:
        """Write the decode steps `alloc_step` has not recorded yet into the requests' records. Every method
        that reads the records calls it first; an engine may call it when idle."""
        self._steady = None
        if not self._journal:
            return
        journal, self._journal = self._journal, []
        reqs = self._reqs
        for rids, got in journal:
            held = [reqs[rid] for rid in rids]
            for t, ps in zip(self._token_idx, got, strict=True):
                rid_of, pos_of = self._rid[t], self._pos[t]
                for r, rid, p in zip(held, rids, ps, strict=True):
                    own = r.pages[t]
                    pos_of[p] = r.start + len(own)
                    rid_of[p] = rid
                    own.append(p)

    def hold_tokens(self, rids: Sequence[int]) -> bool:
        """Whether every request of `rids` is open and holds a token page (of its own, from its start on;
        released ones count), so `alloc_step` knows each one's next position."""
        if rids == self._steady:
            return True  # the last step's requests (each got a token page), and nothing but steps since
        reqs, idx = self._reqs, self._token_idx
        try:
            held = itemgetter(*rids)(reqs) if len(rids) > 1 else [reqs[r] for r in rids]
        except KeyError:
            return False
        if not idx:
            return True
        first = idx[0]  # token types grow together: the first one's list settles almost every request
        return all(r.pages[first] or any(r.pages[t] for t in idx) for r in held)

    def alloc_batch(self, parts: Sequence[BatchPart]) -> list[dict[str, list[int]]]:
        """Pages for a batch of requests, all or nothing: per part, in order, its pages by type name, placed
        with the request's other pages. A batch of one token for each of several distinct requests is a decode
        step (`alloc_step`). If per-request placement takes more large pages than `plan` counted, everything
        is given back and placed again `packed`. Raises OutOfPagesError, allocating nothing and opening no
        record, if the batch does not fit."""
        self.record_steps()
        demand = Counter(dict.fromkeys(self.token_types, sum(p.num_tokens for p in parts)))
        for p in parts:
            if p.extra_pages:
                demand.update(p.extra_pages)
        self._require_fits(demand)
        opened = [p.rid for p in parts if p.rid not in self._reqs]
        for p in parts:
            r = self._reqs.get(p.rid)
            if r is None:
                self.open(p.rid, start=p.start_tokens)
            elif p.num_tokens and not any(r.pages[t] for t in self._token_idx):
                r.start = p.start_tokens  # opened by a state page: its token pages start here
        try:
            return self._alloc_batch(parts)
        except OutOfPagesError:
            for rid in opened:
                self._reqs.pop(rid)
            raise

    def _alloc_batch(self, parts: Sequence[BatchPart]) -> list[dict[str, list[int]]]:
        rids = [p.rid for p in parts]
        if len(parts) > 1 and all(p.num_tokens == 1 and not p.extra_pages for p in parts) \
                and len(set(rids)) == len(rids):
            step = self.alloc_step(rids)
            return [{name: [pages[i]] for name, pages in step.items()} for i in range(len(parts))]
        try:
            return self._alloc_parts(parts)
        except OutOfPagesError:
            with self.packed():
                return self._alloc_parts(parts)

    def _alloc_parts(self, parts: Sequence[BatchPart]) -> list[dict[str, list[int]]]:
        """Every part's pages in turn; on a shortfall, give back what was taken (OutOfPagesError)."""
        out: list[tuple[int, dict[str, list[int]]]] = []
        try:
            for p in parts:
                got = self.alloc_tokens(p.rid, p.num_tokens) if p.num_tokens else {}
                out.append((p.rid, got))
                for name, n in (p.extra_pages or {}).items():
                    got[name] = self.alloc(p.rid, name, n)
        except OutOfPagesError:
            for rid, got in reversed(out):
                for name, pages in reversed(got.items()):
                    self._give_back(rid, name, pages)
            raise
        return [got for _, got in out]

    def _give_back(self, rid: int, name: str, pages: list[int]) -> None:
        """Undo the request's latest allocation of `pages` (the last ones it holds of `name`)."""
        r, t = self._reqs[rid], self._index[name]
        self.allocator.types[t].free(pages)
        self._forget(t, pages)
        own = r.pages[t]
        assert own[len(own) - len(pages):] == pages, f"{name}: not the request's latest pages"
        del own[len(own) - len(pages):]

    @contextmanager
    def packed(self) -> Iterator[None]:
        """Within this block placement takes free slots first (holes, then other requests' open large pages)
        and carves a fresh large page only when none is left, so a demand uses exactly the large pages `plan`
        counts. Outside it, a request that needs a new open large page carves one while the pool is above its
        low-water mark, which can take more."""
        pool = self.allocator.pool
        saved, pool.low_water = pool.low_water, pool.total + 1
        try:
            yield
        finally:
            pool.low_water = saved

    def _require_fits(self, demand: Mapping[str, int]) -> None:
        """Raise OutOfPagesError (with the plan's numbers) unless `demand` fits."""
        if not self.fits(demand):
            needed = self.plan(demand)
            raise OutOfPagesError(",".join(demand), needed.large_pages_needed, needed.large_pages_free)

    def _joint(self, take: Callable[..., list[int]], demand: Mapping[str, int]) -> list[list[int]]:
        """Run `take(small_allocator)` for every token type, all or nothing. If placement used more large
        pages than `plan` counted and a later type runs short, roll back and place again `packed`. With at least
        a free large page per page asked (a page takes at most one new large page) no type can run short: the
        types then allocate one after the other, without the fit check."""
        types = self._token_allocators
        if self.allocator.pool.num_free >= sum(demand.values()):
            return [take(a) for a in types]
        self._require_fits(demand)
        try:
            return self._take_all(types, take)
        except OutOfPagesError:
            with self.packed():
                return self._take_all(types, take)

    @staticmethod
    def _take_all(types: Sequence[SmallPageAllocator], take: Callable[..., list[int]]) -> list[list[int]]:
        """`take` from every type in turn; on OutOfPagesError, free what was taken and re-raise."""
        got: list[list[int]] = []
        try:
            for a in types:
                got.append(take(a))
        except OutOfPagesError:
            for a, pages in zip(types, got, strict=False):
                a.free(pages)
            raise
        return got

    def _hold(self, r: _Request, t: int, pages: list[int]) -> None:
        own, rid_of, rid = r.pages[t], self._rid[t], r.rid
        for p in pages:  # plain loops: map(seq.__setitem__, ...) costs 2-4x as much (a slot wrapper per call)
            rid_of[p] = rid
        if self._kinds[t] is PageKind.TOKENS:
            pos_of = self._pos[t]
            for pos, p in enumerate(pages, r.start + len(own)):
                pos_of[p] = pos
        own.extend(pages)

    def free(self, name: str, pages: Iterable[int]) -> int:
        """Free pages that requests hold (whichever requests). Returns large pages returned to the pool.
        Raises ValueError, freeing nothing, if a page is not held by a request (the tree's, or free)."""
        self.record_steps()
        t = self._index[name]
        pages = pages if type(pages) is list else list(pages)
        if not pages:
            return 0
        rid_of = self._rid[t]
        holders = itemgetter(*pages)(rid_of) if len(pages) > 1 else (rid_of[pages[0]],)
        if NOT_HELD in holders:
            bad = pages[holders.index(NOT_HELD)]
            raise ValueError(f"{name}: page {bad} is not held by a request")
        freed = self.allocator.types[t].free(pages)  # validates (each page once) before changing anything
        self._unhold(t, pages, holders)
        return freed

    def _forget(self, t: int, pages: list[int]) -> None:
        """Clear the page -> request index for `pages` (their records drop them themselves)."""
        rid_of = self._rid[t]
        for p in pages:
            rid_of[p] = NOT_HELD

    def _unhold(self, t: int, pages: Sequence[int], holders: Sequence[int]) -> None:
        rid_of, reqs = self._rid[t], self._reqs
        if self._kinds[t] is PageKind.TOKENS and holders.count(holders[0]) == len(holders):
            # one request's pages (a checkpoint hands over the checkpointed request's own)
            r, pos_of = reqs[holders[0]], self._pos[t]
            own, start = r.pages[t], r.start
            for p in pages:
                own[pos_of[p] - start] = None
                rid_of[p] = NOT_HELD
        elif self._kinds[t] is PageKind.TOKENS:
            pos_of = self._pos[t]
            for p, rid in zip(pages, holders, strict=True):
                r = reqs[rid]
                r.pages[t][pos_of[p] - r.start] = None
                rid_of[p] = NOT_HELD
        else:
            for p, rid in zip(pages, holders, strict=True):
                reqs[rid].pages[t].remove(p)
                rid_of[p] = NOT_HELD

    def release_window(self, rid: int, computed_tokens: int) -> int:
        """Free `rid`'s own pages that no step after `computed_tokens` reads (policy.releasable_pages), and
        drop its lock on the cached prefix's pages of a type once the releasable range covers the prefix.
        Returns the pages freed."""
        self.record_steps()
        r, freed = self._reqs[rid], 0
        for t in self._windowed:
            stop = self.tree.policies[t].releasable_pages(computed_tokens).stop
            if stop >= r.start and r.handle is not None:
                self.tree.release_type(r.handle, self.names[t])
            lo = max(r.released[t], r.start)
            if stop <= lo:
                continue
            own = r.pages[t]
            out = [p for p in own[lo - r.start:stop - r.start] if p is not None]
            own[lo - r.start:stop - r.start] = repeat(None, min(stop, r.start + len(own)) - lo)
            r.released[t] = stop
            if out:
                freed += len(out)
                self.allocator.types[t].free(out)
                self._forget(t, out)
        return freed

    def cache(self, rid: int, tokens: Sequence[int], *, states: Mapping[str, int | None] | None = None,
              key: Hashable | None = None) -> InsertResult:
        """Hand `rid`'s pages for tokens [0, n = len(tokens)) to the tree (its own positions [start, n); for
        each state type the page `states[name]` at the end, which a request must hold or None; every encoder
        page it holds). The tree frees duplicates. Its own token pages then start at n. Does not move the
        lock (call `lock`). Raises ValueError, changing nothing, on a malformed insert."""
        self.record_steps()
        r, n = self._reqs[rid], len(tokens) // self.layout.tokens_per_page
        if n < r.start:
            raise ValueError(f"request {rid}: caching {n} tokens, but its own pages start at {r.start}")
        pages: dict[str, list[int | None]] = {}
        for t, name in enumerate(self.names):
            kind = self._kinds[t]
            if kind is PageKind.TOKENS:
                pages[name] = [*repeat(None, r.start), *r.pages[t][:n - r.start]]
            elif kind is PageKind.STATE:
                pages[name] = [*repeat(None, n - 1), (states or {}).get(name)] if n else []
            elif r.pages[t]:
                pages[name] = list(r.pages[t])
        result = self.cache_pages(tokens, pages, r.key if key is None else key)
        for t in self._token_idx:
            r.pages[t] = r.pages[t][n - r.start:]
            r.released[t] = max(r.released[t], n)
        r.start = n
        return result

    def cache_pages(self, tokens: Sequence[int], pages: Mapping[str, Sequence[int | None]],
                    key: Hashable = None, *, below: Node | None = None) -> InsertResult:
        """Insert `tokens` with explicit `pages` (TypedRadixTree.insert: the tree takes them, frees the ones it
        already has; `below`: they continue a locked node's path); the pages requests held stop being theirs.
        For engines that keep the page of every position themselves (sglang's req_to_token rows)."""
        self.record_steps()
        result = self.tree.insert(tokens, pages, key, below=below)
        for t, name in enumerate(self.names):
            rid_of = self._rid[t]
            held = [p for p in pages.get(name, ()) if p is not None and rid_of[p] != NOT_HELD]
            if held:
                self._unhold(t, held, [rid_of[p] for p in held])
        return result

    def close(self, rid: int) -> int:
        """Free every page `rid` still holds, release its lock, forget its placement owner and the record.
        Returns the pages freed here."""
        self.record_steps()
        r = self._reqs.pop(rid)
        freed = 0
        for t, own in enumerate(r.pages):
            live = [p for p in own if p is not None]
            if live:
                self.allocator.types[t].free(live)
                self._forget(t, live)
                freed += len(live)
        if r.handle is not None:
            self.tree.unlock(r.handle)
        self.allocator.close_owner(rid)
        return freed

    # ------------------------------------------------------------------------------------------ checks
    def held_pages(self) -> dict[str, list[int]]:
        """Every page requests hold, per type name."""
        self.record_steps()
        out: dict[str, list[int]] = {n: [] for n in self.names}
        for r in self._reqs.values():
            for t, own in enumerate(r.pages):
                out[self.names[t]].extend(p for p in own if p is not None)
        return out

    def check_integrity(self) -> None:
        """Assert allocator and tree integrity, that every used page is cached by the tree or held by exactly
        one request, and that the page -> request index agrees with the records. O(pages)."""
        self.record_steps()
        self.allocator.check_integrity()
        held = self.held_pages()
        for t, name in enumerate(self.names):
            index = {p: rid for p, rid in enumerate(self._rid[t]) if rid != NOT_HELD}
            recorded = {p: r.rid for r in self._reqs.values() for p in r.pages[t] if p is not None}
            assert index == recorded, f"{name}: page -> request index out of step with the records"
            if self._kinds[t] is PageKind.TOKENS:
                for r in self._reqs.values():
                    for i, p in enumerate(r.pages[t]):
                        assert p is None or self._pos[t][p] == r.start + i, f"{name}: page {p} position"
        self.tree.check_integrity(held)
