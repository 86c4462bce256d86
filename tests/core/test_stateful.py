"""Hypothesis state machine over the core `KVCacheManager` (allocator + typed radix tree + running requests)
with mixed layer types: the lifecycle the sglang adapter and the replay benchmark both drive.

Requests match a prefix, lock it, allocate their prefill (evicting when short), decode in batches, release
out-of-window pages, cache what they computed (chunked prefill) and finish by caching (or abort). Frees also
arrive as bare page ids, as sglang sends them. `check_integrity()` (allocator, tree, every page cached or held
by exactly one request) runs after every step; at the end every request is closed, everything evicted, and
every large page must be back in the common pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import hypothesis.strategies as st
from corekit import chunked, cross, full, make_model, mamba, swa
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sglang_jenga.core import KVCacheManager, OutOfPagesError, PageKind, plan_layout

PROMPTS = ([0, 1, 2, 0, 1, 2, 0, 1], [1, 1, 0, 0, 2, 2, 1, 1], [2, 0, 2, 0, 2, 0, 2, 0])
# shared prompts cut anywhere, plus a random tail: many prefixes in common, at and between checkpoints
SEQS = st.builds(lambda p, cut, tail: (p[:cut] + tail) or [0], st.sampled_from(PROMPTS), st.integers(0, 8),
                 st.lists(st.integers(0, 2), max_size=6))
KEYS = st.sampled_from([None, "img"])


@dataclass
class Req:
    rid: int
    tokens: list[int]
    key: str | None


class ManagerMachine(RuleBasedStateMachine):
    GROUPS: tuple = (full(), swa(3), chunked(4), mamba(interval=4), cross(encoder_tokens=2))
    P = 1
    NUM_LARGE = 48

    kv: KVCacheManager

    @initialize()
    def setup(self) -> None:
        self.kv = KVCacheManager(plan_layout(make_model(*self.GROUPS), self.P), self.NUM_LARGE)
        self.kinds = {t.name: t.kind for t in self.kv.layout.types}
        self.reqs: dict[int, Req] = {}
        self.history: list[tuple[list[int], str | None]] = []  # sequences cached so far
        self.next_rid = 0

    # ------------------------------------------------------------------------------------------- rules
    @rule(seq=SEQS, key=KEYS)
    def start(self, seq: list[int], key: str | None) -> None:
        self.next_rid += 1
        rid = self.next_rid
        hit = self.kv.match(seq, key)
        event("start: prefix hit" if hit.hit_tokens else "start: miss")
        self.kv.open(rid, key, hit.hit_tokens // self.P)
        self.kv.lock(rid, hit.node)
        self.reqs[rid] = Req(rid, list(seq), key)
        if not self._prefill(rid, hit):
            self._close(rid)

    @precondition(lambda self: self.history)
    @rule(data=st.data(), cut=st.integers(0, 4))
    def start_again(self, data: st.DataObject, cut: int) -> None:
        """A follow-up on something cached before (a conversation's next turn, a shared document)."""
        tokens, key = data.draw(st.sampled_from(self.history))
        self.start(tokens[:max(1, len(tokens) - cut)] + [data.draw(st.integers(0, 2))], key)

    @precondition(lambda self: self.reqs)
    @rule(data=st.data(), steps=st.integers(1, 3), release=st.booleans(), close=st.booleans())
    def decode(self, data: st.DataObject, steps: int, release: bool, close: bool) -> None:
        """`steps` decode steps of one batch back to back (the manager records them at the next call that reads
        its records), after a window release or not, and maybe a request of the batch closed straight after."""
        rids = data.draw(st.lists(st.sampled_from(sorted(self.reqs)), min_size=1, max_size=4, unique=True))
        if release:
            for rid in rids:
                self.kv.release_window(rid, self._pages(rid))
        for _ in range(steps):
            try:
                self.kv.alloc_step(rids, evict=True)
            except OutOfPagesError:
                event("decode: out of pages")
                return
            for rid in rids:
                self.reqs[rid].tokens.extend([data.draw(st.integers(0, 2))] * self.P)
        if close:
            self._close(rids[0])

    @precondition(lambda self: self.reqs)
    @rule(data=st.data())
    def free_as_bare_ids(self, data: st.DataObject) -> None:
        """sglang's way: window slots come back as page ids, without the request."""
        held = self.kv.held_pages()
        name = data.draw(st.sampled_from([n for n in self.kv.names if self.kinds[n] is PageKind.TOKENS
                                          and n != "full"]))
        if held[name]:
            pages = data.draw(st.lists(st.sampled_from(held[name]), max_size=3, unique=True))
            self.kv.free(name, pages)

    @precondition(lambda self: self.reqs)
    @rule(data=st.data())
    def cache_chunk(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.reqs)))
        self._cache(rid, with_state=data.draw(st.booleans()))

    @precondition(lambda self: self.reqs)
    @rule(data=st.data(), insert=st.booleans())
    def finish(self, data: st.DataObject, insert: bool) -> None:
        rid = data.draw(st.sampled_from(sorted(self.reqs)))
        if insert:
            self._cache(rid, with_state=True)
        self._close(rid)

    @rule(seq=SEQS, key=KEYS)
    def match_only(self, seq: list[int], key: str | None) -> None:
        hit = self.kv.match(seq, key)
        assert hit.hit_tokens <= len(seq) and hit.hit_tokens % self.P == 0
        assert hit.node is None or hit.node.end == hit.hit_tokens

    @rule(data=st.data())
    def bad_free(self, data: st.DataObject) -> None:
        """Freeing a page no request holds (cached or free) raises and changes nothing."""
        tree_pages = [p for node in self.kv.tree.iter_nodes() for p in node.present(0)]
        free = [p for p in range(self.kv.allocator.types[0].num_pages) if not self.kv.allocator.types[0].is_used(p)]
        candidates = tree_pages + free[:4]
        if not candidates:
            return
        before = self.kv.allocator.stats()
        try:
            self.kv.free("full", [data.draw(st.sampled_from(candidates))])
        except ValueError:
            assert self.kv.allocator.stats() == before
            return
        raise AssertionError("a page no request holds was freed")

    @rule(num_bytes=st.integers(0, 64))
    def evict(self, num_bytes: int) -> None:
        before = self.kv.allocator.stats().bytes_used
        res = self.kv.evict_until(lambda freed: sum(freed) * 2 >= num_bytes)
        event("evict: freed pages" if res.bytes_freed else "evict: nothing")
        assert before - self.kv.allocator.stats().bytes_used == res.bytes_freed

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "kv"):
            self.kv.check_integrity()
            assert sorted(self.kv.open_requests()) == sorted(self.reqs)

    def teardown(self) -> None:
        if not hasattr(self, "kv"):
            return
        for rid in list(self.reqs):
            self._close(rid)
        self.kv.evict_all()
        self.kv.check_integrity()
        assert self.kv.allocator.large_pages_free == self.kv.allocator.pool.total, "large pages not returned"
        assert self.kv.tree.num_nodes == 0

    # ----------------------------------------------------------------------------------------- helpers
    def _pages(self, rid: int) -> int:
        return -(-len(self.reqs[rid].tokens) // self.P)

    def _prefill(self, rid: int, hit: object) -> bool:
        req, start = self.reqs[rid], self.kv.held(rid).start_tokens
        try:
            for name, kind in self.kinds.items():
                if kind is PageKind.STATE:
                    self.kv.alloc(rid, name, 1, evict=True)  # the live state
                elif kind is PageKind.REQUEST and req.key is not None:
                    shared = hit.pages.get(name)  # type: ignore[attr-defined]
                    if not (shared and shared.pages):
                        self.kv.alloc(rid, name, 2, evict=True)
            self.kv.alloc_tokens(rid, self._pages(rid) - start, evict=True)
        except OutOfPagesError:
            event("prefill: out of pages")
            return False
        for name, kind in self.kinds.items():
            if kind is PageKind.STATE:
                self.kv.release_type(rid, name)
        return True

    def _cache(self, rid: int, with_state: bool) -> None:
        """Cache the request's whole pages; a state page at the end (a fresh copy) if `with_state`."""
        req = self.reqs[rid]
        n = len(req.tokens) // self.P
        if n < self.kv.held(rid).start_tokens:
            return
        states: dict[str, int | None] = {}
        for name, kind in self.kinds.items():
            if kind is PageKind.STATE and with_state and n:
                try:
                    states[name] = self.kv.alloc(rid, name, 1, evict=True)[0]
                except OutOfPagesError:
                    states[name] = None
        result = self.kv.cache(rid, req.tokens[:n * self.P], states=states)
        self.history.append((req.tokens[:n * self.P], req.key))
        event("cache: duplicates freed" if result.duplicates_freed else "cache: no duplicates")
        self.kv.lock(rid, result.node)
        assert self.kv.held(rid).start_tokens == n

    def _close(self, rid: int) -> None:
        del self.reqs[rid]
        self.kv.close(rid)


class PagedManagerMachine(ManagerMachine):
    """Two tokens per page, no chunked type (more hits), 3-token window across page boundaries."""

    GROUPS = (full(), swa(3), mamba(interval=4), cross(encoder_tokens=2))
    P = 2


class GemmaRatioMachine(ManagerMachine):
    """Gemma-3's shape at the tiny zoo's sizes: five sliding-window layers per full-attention layer, so a
    sliding-window page is a whole large page (its allocator keeps no open pages)."""

    GROUPS = (full(), swa(3, layers=5))


_settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
TestManager = ManagerMachine.TestCase
TestManager.settings = _settings
TestPagedManager = PagedManagerMachine.TestCase
TestPagedManager.settings = _settings
TestGemmaRatio = GemmaRatioMachine.TestCase
TestGemmaRatio.settings = _settings
