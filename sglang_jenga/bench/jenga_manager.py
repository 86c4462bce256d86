"""The Jenga core as a replayed memory manager: `plan_layout` + `TwoLevelAllocator` + `TypedRadixTree`, every
layer type of the model in one byte budget, one token per page (P = 1).

Per request, mirroring what sglang's scheduler does with its own tree (so the two differ only in memory
management):
  admit    match the prompt (at most kv_len - 1 tokens, so one token is computed), lock the hit; check that
           the prefill fits free + evictable memory (`_fits`, sglang's PrefillAdder does the same); allocate one
           live state page per Mamba-like type (a copy of the hit state) and the image's encoder pages unless
           the key root already has them; prefill in chunks of `chunk` tokens: allocate every token type's
           pages, insert the prefix so far into the tree (with a copy of the state at the chunk end), move the
           lock to the inserted node. The lock's state types are released at once (release_type): the request
           runs on its own live state, so cached states stay evictable (sglang keeps them pinned by default,
           SGLANG_OPT_MAMBA_SKIP_DECODE_LOCK=0, which is why it budgets 3 Mamba slots per request).
  decode   free the request's own window pages no later token reads (releasable_pages) and drop its lock on
           the cached prefix's window once past it (release_type); then one page per token type per request
           (alloc_each), evicting with evict_for on shortage.
  finish   insert the whole sequence with the request's own pages (None where released) and its live state at
           the end, unlock, close the owner.
  retract  free the own pages and states, unlock, close the owner.
Every allocation that runs short calls `tree.evict_for(type, n)` once and retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sglang_jenga.core import (
    LockHandle,
    ModelSpec,
    OutOfPagesError,
    PageKind,
    TwoLevelAllocator,
    TypedRadixTree,
    plan_layout,
)

from .managers import Footprint, Manager, PoolUsage, Seq
from .profiles import readable_bytes


@dataclass
class _JReq:
    """A running request's pages. `own[t]` holds positions [cached, kv_len) of TOKENS type t (None once
    released); `released[t]`: own positions below it are freed; `states[t]`: live state page; `enc[t]`: encoder
    pages not yet handed to the tree; `unlocked`: types whose prefix window lock was dropped."""

    owner: int
    key: Any
    handle: LockHandle | None = None
    cached: int = 0
    own: dict[str, list[int | None]] = field(default_factory=dict)
    released: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    enc: dict[str, list[int]] = field(default_factory=dict)
    enc_shared: int = 0
    unlocked: set[str] = field(default_factory=set)


class JengaManager(Manager):
    """Jenga's allocator and tree over `pool_bytes` (module docstring)."""

    def __init__(self, model: ModelSpec, pool_bytes: int, *, chunk: int = 8192, max_running: int = 2048,
                 name: str = "jenga") -> None:
        self.name, self.model, self.max_running, self.chunk = name, model, max_running, chunk
        self.layout = plan_layout(model, 1)
        self.alloc = TwoLevelAllocator.for_bytes(self.layout, pool_bytes)
        self.tree = TypedRadixTree(self.alloc)
        kinds = {t.name: t.kind for t in self.layout.types}
        self.tokens_types = [n for n, k in kinds.items() if k is PageKind.TOKENS]
        self.state_types = [n for n, k in kinds.items() if k is PageKind.STATE]
        self.enc_types = [n for n, k in kinds.items() if k is PageKind.REQUEST]
        self.policies = {n: self.tree.policies[i] for i, n in enumerate(self.tree.names)}
        self.windowed = [n for n in self.tokens_types if not self.policies[n].leaf_only]
        self.page_bytes = {t.name: t.page_bytes for t in self.layout.types}
        self._next_owner = 0

    # ------------------------------------------------------------------------------------------ helpers
    def _alloc(self, name: str, n: int, owner: int) -> list[int] | None:
        """n pages of `name` for `owner`, evicting once on shortage; None if they do not fit."""
        if n == 0:
            return []
        try:
            return self.alloc.alloc(name, n, owner)
        except OutOfPagesError:
            self.tree.evict_for(name, n)
        try:
            return self.alloc.alloc(name, n, owner)
        except OutOfPagesError:
            return None

    def _alloc_each(self, name: str, owners: list[int]) -> list[int] | None:
        try:
            return self.alloc.alloc_each(name, owners)
        except OutOfPagesError:
            self.tree.evict_for(name, len(owners))
        try:
            return self.alloc.alloc_each(name, owners)
        except OutOfPagesError:
            return None

    def _relock(self, r: _JReq, node: Any) -> None:
        new = self.tree.lock(node)
        if r.handle is not None:
            self.tree.unlock(r.handle)
        r.handle = new
        r.unlocked.clear()
        self._drop_state_locks(r)

    def _drop_state_locks(self, r: _JReq) -> None:
        """A running request computes on its own copy of the state: the cached one need not stay pinned."""
        if r.handle is not None:
            for name in self.state_types:
                self.tree.release_type(r.handle, name)

    def _release_all(self, r: _JReq) -> None:
        """Free everything `r` owns outside the tree, unlock, forget the owner."""
        for name, own in r.own.items():
            live = [p for p in own if p is not None]
            if live:
                self.alloc.free(name, live)
        for name, page in r.states.items():
            self.alloc.free(name, [page])
        for name, enc in r.enc.items():
            if enc:
                self.alloc.free(name, enc)
        r.own, r.states, r.enc = {}, {}, {}
        if r.handle is not None:
            self.tree.unlock(r.handle)
            r.handle = None
        self.alloc.close_owner(r.owner)

    # ------------------------------------------------------------------------------------------- admit
    def admit(self, seq: Seq, kv_len: int) -> int | None:
        self._next_owner += 1
        r = _JReq(self._next_owner, seq.image_key)
        tokens = seq.tokens[:kv_len].tolist()
        hit = self.tree.match(tokens[:kv_len - 1], r.key)
        if hit.node is not None:
            r.handle = self.tree.lock(hit.node)
        r.cached = hit.hit_tokens
        seq.state = r
        if not self._fits(kv_len - r.cached, seq.image_tokens, hit.pages) or not self._admit_extras(
                r, seq, hit.pages):
            self._release_all(r)
            seq.state = None
            return None
        self._drop_state_locks(r)  # the hit state is copied into the live one
        if not self._prefill(r, tokens):
            self._release_all(r)
            seq.state = None
            return None
        return hit.hit_tokens

    def _fits(self, extend: int, image_tokens: int, hit_pages: dict[str, Any]) -> bool:
        """Whether the prefill can fit before it starts (as sglang's PrefillAdder checks its budget first):
        every full-attention page of the `extend` new tokens, a window (or chunk) plus one prefill chunk of
        each windowed type (the older ones go to the tree, evictable), one live state per state type and
        the image's encoder pages unless cached, against free + evictable bytes."""
        need = {}
        for name in self.tokens_types:
            policy = self.policies[name]
            span = extend if policy.leaf_only else min(extend, self._reach(name) + self.chunk)
            need[name] = span * self.page_bytes[name]
        for name in self.state_types:
            need[name] = self.page_bytes[name]
        for name in self.enc_types:
            cached = hit_pages.get(name)
            if cached is None or not cached.pages:
                need[name] = self.policies[name].pages_for(image_tokens) * self.page_bytes[name]
        stats = self.alloc.stats()
        holes = {t.name: t.bytes_free_in_carved for t in stats.types}
        beyond_holes = sum(max(0, b - holes[name]) for name, b in need.items())
        return beyond_holes <= stats.large_pages_free * stats.large_page_bytes + self.tree.stats().evictable_bytes

    def _reach(self, name: str) -> int:
        """Tokens a windowed type keeps behind the newest one (window, or chunk for chunked attention)."""
        spec = self.model.group(name).spec
        return int(getattr(spec, "window", 0) or getattr(spec, "chunk", 0))

    def _admit_extras(self, r: _JReq, seq: Seq, hit_pages: dict[str, Any]) -> bool:
        """Live state pages and (unless cached) the image's encoder pages."""
        for name in self.state_types:
            page = self._alloc(name, 1, r.owner)
            if page is None:
                return False
            r.states[name] = page[0]
        for name in self.enc_types:
            shared = hit_pages.get(name)
            if shared is not None and shared.pages:
                r.enc_shared = len(shared.pages)
                continue
            pages = self._alloc(name, self.policies[name].pages_for(seq.image_tokens), r.owner)
            if pages is None:
                return False
            r.enc[name] = pages
        return True

    def _prefill(self, r: _JReq, tokens: list[int]) -> bool:
        """Chunked prefill from r.cached to len(tokens); each chunk is inserted and re-locked."""
        while r.cached < len(tokens):
            end = min(len(tokens), r.cached + self.chunk)
            for name in self.tokens_types:
                pages = self._alloc(name, end - r.cached, r.owner)
                if pages is None:
                    return False
                r.own[name] = list(pages)
            self._insert(r, tokens[:end], copy_state=True)
        return True

    def _insert(self, r: _JReq, tokens: list[int], copy_state: bool) -> None:
        """Hand r's own pages for [cached, len(tokens)) to the tree (plus a state at the end: a fresh copy, or
        the live state itself when `copy_state` is False) and move r's lock to the inserted node."""
        n = len(tokens)
        pages: dict[str, list[int | None]] = {}
        none: list[int | None] = [None]
        for name in self.tokens_types:
            pages[name] = none * r.cached + r.own.pop(name, [])
        for name in self.state_types:
            state: int | None = None
            if not copy_state:
                state = r.states.pop(name)
            elif copy := self._alloc(name, 1, r.owner):
                state = copy[0]
            pages[name] = none * (n - 1) + [state]
        for name, enc in r.enc.items():
            pages[name] = list(enc)
        r.enc = {}
        result = self.tree.insert(tokens, pages, r.key)
        r.cached = n
        r.released = {}
        self._relock(r, result.node)

    # ------------------------------------------------------------------------------------------ decode
    def decode(self, batch: list[Seq]) -> bool:
        self._release_windows(batch)
        states: list[_JReq] = [s.state for s in batch]
        owners = [r.owner for r in states]
        got: dict[str, list[int]] = {}
        for name in self.tokens_types:
            step = self._alloc_each(name, owners)
            if step is None:
                for done, p in got.items():
                    self.alloc.free(done, p)
                return False
            got[name] = step
        for name, step in got.items():
            for r, page in zip(states, step, strict=True):
                r.own.setdefault(name, []).append(page)
        return True

    def _release_windows(self, batch: list[Seq]) -> None:
        """Free own window pages below releasable_pages(kv_len); drop the prefix window lock once past it."""
        frees: dict[str, list[int]] = {name: [] for name in self.windowed}
        for s in batch:
            r: _JReq = s.state
            for name in self.windowed:
                stop = self.policies[name].releasable_pages(s.kv_len).stop
                if stop >= r.cached and name not in r.unlocked and r.handle is not None:
                    self.tree.release_type(r.handle, name)
                    r.unlocked.add(name)
                start = max(r.released.get(name, 0), r.cached)
                if stop <= start:
                    continue
                own = r.own.get(name, [])
                for i in range(start - r.cached, stop - r.cached):
                    page = own[i]
                    if page is not None:
                        frees[name].append(page)
                        own[i] = None
                r.released[name] = stop
        for name, pages in frees.items():
            if pages:
                self.alloc.free(name, pages)

    # ------------------------------------------------------------------------------------ finish/retract
    def finish(self, seq: Seq) -> None:
        r: _JReq = seq.state
        self._insert(r, seq.tokens[:seq.kv_len].tolist(), copy_state=False)
        self._release_all(r)
        seq.state = None

    def retract(self, seq: Seq) -> None:
        self._release_all(seq.state)
        seq.state = None

    # ------------------------------------------------------------------------------------------ metrics
    def headroom_ok(self, num_requests: int, tokens_each: int) -> bool:
        """Per token type, the need beyond its own free slots must fit in free large pages + evictable bytes."""
        stats = self.alloc.stats()
        have = stats.large_pages_free * stats.large_page_bytes + self.tree.stats().evictable_bytes
        holes = {t.name: t.bytes_free_in_carved for t in stats.types}
        need = 0
        for name in self.tokens_types:
            want = num_requests * tokens_each * self.layout.type(name).token_bytes
            need += max(0, want - holes[name])
        return need <= have

    def footprint(self, seq: Seq) -> Footprint:
        r: _JReq = seq.state
        held = 0
        for name in self.tokens_types:
            own = sum(1 for p in r.own.get(name, ()) if p is not None)
            pinned = 0 if name in r.unlocked else len(self.policies[name].needed_pages(r.cached))
            held += (own + pinned) * self.page_bytes[name]
        held += sum(self.page_bytes[n] for n in r.states)
        for name in self.enc_types:
            held += (len(r.enc.get(name, ())) or r.enc_shared or self._enc_on_root(r, name)) * self.page_bytes[name]
        return Footprint(held, readable_bytes(self.model, seq.kv_len, seq.image_tokens))

    def _enc_on_root(self, r: _JReq, name: str) -> int:
        node = r.handle.node if r.handle is not None else None
        if node is None or node.root.req_pages is None:
            return 0
        return len(node.root.req_pages[self.tree.names.index(name)])

    def usage(self) -> PoolUsage:
        stats = self.alloc.stats()
        in_carved = sum(t.bytes_free_in_carved for t in stats.types)
        free = stats.large_pages_free * stats.large_page_bytes + in_carved
        return PoolUsage(stats.bytes_total, free, self.tree.stats().cached_bytes, stats.bytes_wasted)

    def check(self, running: list[Seq]) -> None:
        held: dict[str, list[int]] = {name: [] for name in self.tree.names}
        for s in running:
            r: _JReq = s.state
            for name, own in r.own.items():
                held[name] += [p for p in own if p is not None]
            for name, page in r.states.items():
                held[name].append(page)
            for name, enc in r.enc.items():
                held[name] += enc
        self.alloc.check_integrity()
        self.tree.check_integrity(held)

    def drain(self) -> bool:
        self.tree.evict(1 << 62)
        self.alloc.check_integrity()
        self.tree.check_integrity({})
        return self.alloc.large_pages_free == self.alloc.pool.total

    def describe(self) -> dict[str, Any]:
        return {"large_page_bytes": self.layout.large_page_bytes, "large_pages": self.alloc.pool.total,
                "pages_per_large": {t.name: t.pages_per_large for t in self.layout.types}}
