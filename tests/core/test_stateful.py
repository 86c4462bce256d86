"""Hypothesis state machine over the allocator and the typed radix tree with mixed layer types.

Requests match a prefix, lock it, allocate the rest (evicting on OutOfPagesError), release sliding-window and
chunked pages early, and finish by inserting (or aborting). Integrity of the allocator, the tree and the page
accounting (allocator used == cached + held by requests) is checked after every step; at the end every request
is released, everything evicted, and every large page must be back in the common pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hypothesis.strategies as st
from corekit import chunked, cross, full, make_tree, mamba, swa
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sglang_jenga.core import LockHandle, OutOfPagesError, PageKind, TwoLevelAllocator, TypedRadixTree

PROMPTS = ([0, 1, 2, 0, 1, 2, 0, 1], [1, 1, 0, 0, 2, 2, 1, 1], [2, 0, 2, 0, 2, 0, 2, 0])
# shared prompts cut anywhere, plus a random tail: many prefixes in common, at and between checkpoints
SEQS = st.builds(lambda p, cut, tail: (p[:cut] + tail) or [0], st.sampled_from(PROMPTS), st.integers(0, 8),
                 st.lists(st.integers(0, 2), max_size=6))
KEYS = st.sampled_from([None, "img"])


@dataclass
class Req:
    owner: int
    tokens: list[int]
    key: str | None
    hit_pages: int
    handle: LockHandle | None
    pages: dict[str, list[int | None]] = field(default_factory=dict)  # aligned, owned by the request
    extra: dict[str, list[int]] = field(default_factory=dict)  # cross-attention encoder pages
    work: dict[str, list[int]] = field(default_factory=dict)  # Mamba working state (never cached)

    def held(self) -> dict[str, list[int]]:
        out = {n: [p for p in ps if p is not None] for n, ps in self.pages.items()}
        for d in (self.extra, self.work):
            for n, ps in d.items():
                out.setdefault(n, []).extend(ps)
        return out


class TreeMachine(RuleBasedStateMachine):
    GROUPS: tuple = (full(), swa(3), chunked(4), mamba(interval=4), cross(encoder_tokens=2))
    P = 1
    NUM_LARGE = 48

    alloc: TwoLevelAllocator
    tree: TypedRadixTree

    @initialize()
    def setup(self) -> None:
        self.alloc, self.tree = make_tree(*self.GROUPS, num_large=self.NUM_LARGE, tokens_per_page=self.P)
        self.reqs: dict[int, Req] = {}
        self.next_owner = 0

    # ------------------------------------------------------------------------------------------- rules
    @rule(seq=SEQS, key=KEYS)
    def start(self, seq: list[int], key: str | None) -> None:
        self.next_owner += 1
        hit = self.tree.match(seq, key)
        handle = self.tree.lock(hit.node) if hit.node is not None else None
        event("start: prefix hit" if hit.hit_tokens else "start: miss")
        req = Req(self.next_owner, seq, key, hit.hit_tokens // self.P, handle)
        self.reqs[req.owner] = req
        if not self._alloc_request(req, hit.pages):
            self._finish(req, insert=False)

    @precondition(lambda self: self.reqs)
    @rule(data=st.data())
    def release_early(self, data: st.DataObject) -> None:
        req = self.reqs[data.draw(st.sampled_from(sorted(self.reqs)))]
        for t, name in enumerate(self.tree.names):
            pol = self.tree.policies[t]
            if pol.kind is PageKind.TOKENS and name in req.pages:
                for i in pol.releasable_pages(len(req.tokens)):
                    p = req.pages[name][i]
                    if p is not None:
                        self.alloc.free(name, [p])
                        req.pages[name][i] = None
        if req.handle is not None and data.draw(st.booleans()):
            self.tree.release_type(req.handle, "swa")

    @precondition(lambda self: self.reqs)
    @rule(data=st.data(), insert=st.booleans())
    def finish(self, data: st.DataObject, insert: bool) -> None:
        self._finish(self.reqs[data.draw(st.sampled_from(sorted(self.reqs)))], insert)

    @rule(seq=SEQS, key=KEYS)
    def match_only(self, seq: list[int], key: str | None) -> None:
        hit = self.tree.match(seq, key)
        assert hit.hit_tokens <= len(seq) and hit.hit_tokens % self.P == 0
        assert hit.node is None or hit.node.end == hit.hit_tokens

    @rule(seq=SEQS, key=KEYS, data=st.data())
    def bad_insert(self, seq: list[int], key: str | None, data: st.DataObject) -> None:
        """Inserting a page the tree already caches, or one never allocated, raises and changes nothing."""
        cached = [p for node in self.tree.iter_nodes() for p in node.present(0)]
        free = [p for p in range(self.alloc.types[0].num_pages) if not self.alloc.types[0].is_used(p)][:4]
        bad = data.draw(st.sampled_from(cached + free)) if cached + free else -1
        n = len(seq) // self.P
        pages = {name: [None] * n for name in self.tree.names if name != "cross"}
        pages["full"] = [bad] + [None] * (n - 1) if n else []
        before = self.tree.stats()
        try:
            self.tree.insert(seq[:n * self.P], pages, key)
        except ValueError:
            assert self.tree.stats() == before
            return
        assert n == 0 or self.tree.match(seq[:n * self.P], key).hit_tokens >= 0

    @rule(num_bytes=st.integers(0, 64))
    def evict(self, num_bytes: int) -> None:
        before = self.alloc.stats().bytes_used
        res = self.tree.evict(num_bytes)
        event("evict: freed pages" if res.bytes_freed else "evict: nothing")
        assert before - self.alloc.stats().bytes_used == res.bytes_freed

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "tree"):
            return
        self.alloc.check_integrity()
        held: dict[str, list[int]] = {n: [] for n in self.tree.names}
        for req in self.reqs.values():
            for n, ps in req.held().items():
                held[n].extend(ps)
        self.tree.check_integrity(held)

    def teardown(self) -> None:
        if not hasattr(self, "tree"):
            return
        for req in list(self.reqs.values()):
            self._finish(req, insert=False)
        self.tree.evict(10**12)
        self.tree.check_integrity({})
        assert self.alloc.large_pages_free == self.alloc.pool.total, "large pages not returned"
        assert self.tree.num_nodes == 0

    # ----------------------------------------------------------------------------------------- helpers
    def _alloc_request(self, req: Req, hit_pages: dict) -> bool:
        n_pages = -(-len(req.tokens) // self.P)
        for t, name in enumerate(self.tree.names):
            pol = self.tree.policies[t]
            if pol.kind is PageKind.REQUEST:
                have = hit_pages.get(name)
                needs_encoder = req.key is not None and not (have and have.pages)
                if needs_encoder and not self._alloc(req, name, 2, req.extra):
                    return False
                continue
            positions = range(req.hit_pages, n_pages)
            if pol.kind is PageKind.STATE:
                positions = [i for i in positions if pol.is_checkpoint((i + 1) * self.P)  # type: ignore
                             or i == n_pages - 1]
                if not self._alloc(req, name, 1, req.work):
                    return False
            entries: list[int | None] = [None] * n_pages
            req.pages[name] = entries
            got: dict[str, list[int]] = {}
            if not self._alloc(req, name, len(positions), got):
                return False
            for i, p in zip(positions, got.get(name, []), strict=True):
                entries[i] = p
        return True

    def _alloc(self, req: Req, name: str, n: int, into: dict[str, list[int]]) -> bool:
        for _ in range(4):
            try:
                into.setdefault(name, []).extend(self.alloc.alloc(name, n, req.owner))
                return True
            except OutOfPagesError as err:
                event("alloc: out of pages, evicting")
                need = (err.requested - err.available) * self.alloc.layout.large_page_bytes
                if self.tree.evict(need).bytes_freed == 0:
                    return False
        return False

    def _finish(self, req: Req, insert: bool) -> None:
        del self.reqs[req.owner]
        n_ins = len(req.tokens) // self.P
        if insert and req.pages:
            pages: dict[str, list[int | None]] = {n: ps[:n_ins] for n, ps in req.pages.items()}
            pages.update({n: list(ps) for n, ps in req.extra.items()})
            res = self.tree.insert(req.tokens[:n_ins * self.P], pages, req.key)
            event("insert: duplicates freed" if res.duplicates_freed else "insert: no duplicates")
            leftovers = {n: [p for p in ps[n_ins:] if p is not None] for n, ps in req.pages.items()}
            for n, ps in req.work.items():
                leftovers[n] = leftovers.get(n, []) + ps
        else:
            leftovers = req.held()
        for n, ps in leftovers.items():
            self.alloc.free(n, ps)
        if req.handle is not None:
            self.tree.unlock(req.handle)
        self.alloc.close_owner(req.owner)


class PagedTreeMachine(TreeMachine):
    """Two tokens per page, no chunked type (more hits), 3-token window across page boundaries."""

    GROUPS = (full(), swa(3), mamba(interval=4), cross(encoder_tokens=2))
    P = 2


_settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
TestTree = TreeMachine.TestCase
TestTree.settings = _settings
TestPagedTree = PagedTreeMachine.TestCase
TestPagedTree.settings = _settings
