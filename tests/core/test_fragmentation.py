"""Fragmentation under a random mixed serving workload stays below 1% of the pool at steady state.

Workload (seeded): a hybrid model with full attention (5 layers), sliding window (26 layers, window 32 tokens)
and a Mamba-style state (520 B, checkpoint every 16 tokens) -- Gemma-3's 10:52 layer ratio at toy byte sizes,
so a large page holds 52 full pages, 10 sliding-window pages or 1 state. Pool: 4,000 large pages. Each step
admits new requests with probability 0.5 (up to 32 running): 70% start with one of 8 shared 64-token system
prompts, then a unique 8..128-token suffix, and generate 4..64 tokens. A request matches and locks its cached
prefix, allocates the rest (prefill), releases out-of-window pages, decodes one token per step (one page per
type per request per step, sliding-window pages released as they leave the window, a state checkpoint every
16 tokens) and on finishing inserts its sequence into the tree. Allocation failures evict (and, failing that,
preempt the newest request). Measured: bytes of free small pages inside carved large pages / pool bytes, after
a 150-step warm-up, over 450 steps; the cache holds ~90% of the pool, so evictions run every few steps.

What remains is mostly pages freed in the current step (sliding-window pages leaving the window, pages of
evicted nodes) that the next allocations reuse, plus the unused tail of each running request's open large
page: an absolute amount set by the number of running requests (~20 KB here, ~40 large pages), not by the
pool. With 2,000 large pages the same workload measures ~1.0% mean.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from corekit import full, make_tree, mamba, swa

from sglang_jenga.core import LockHandle, OutOfPagesError, TwoLevelAllocator, TypedRadixTree

WINDOW, INTERVAL = 32, 16
PROMPTS = [list(range(1000 * (i + 1), 1000 * (i + 1) + 64)) for i in range(8)]


@dataclass
class _Req:
    owner: int
    tokens: list[int]
    out_left: int
    hit: int
    handle: LockHandle | None
    full: list[int | None] = field(default_factory=list)
    swa: list[int | None] = field(default_factory=list)
    states: list[int | None] = field(default_factory=list)
    work: list[int] = field(default_factory=list)


class _Sim:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.alloc, self.tree = make_tree(full(layers=5), swa(WINDOW, layers=26),
                                          mamba(interval=INTERVAL, state_bytes=520), num_large=4000)
        assert self.alloc.layout.large_page_bytes == 520
        self.running: list[_Req] = []
        self.next_id = 0
        self.next_token = 10**6

    # -------------------------------------------------------------------------------------- one step
    def step(self) -> None:
        while len(self.running) < 32 and self.rng.random() < 0.5:
            if not self._admit():
                break
        self._decode()
        for req in [r for r in self.running if r.out_left == 0]:
            self._finish(req)

    def holes_fraction(self) -> float:
        s = self.alloc.stats()
        return sum(t.bytes_free_in_carved for t in s.types) / s.bytes_total

    # ---------------------------------------------------------------------------------------- phases
    def _admit(self) -> bool:
        prompt = list(self.rng.choice(PROMPTS)) if self.rng.random() < 0.7 else []
        prompt += self._fresh_tokens(self.rng.randint(8, 128))
        self.next_id += 1
        hit = self.tree.match(prompt)
        req = _Req(self.next_id, prompt, self.rng.randint(4, 64), hit.hit_tokens,
                   self.tree.lock(hit.node) if hit.node is not None else None)
        n, h = len(prompt), hit.hit_tokens
        req.full, req.swa, req.states = [None] * n, [None] * n, [None] * n
        try:
            self._get(req, "full", range(h, n), req.full)
            self._get(req, "swa", range(h, n), req.swa)
            self._get(req, "mamba", [i for i in range(h, n) if (i + 1) % INTERVAL == 0], req.states)
            req.work = self._alloc_evicting("mamba", 1, req.owner)
        except OutOfPagesError:
            self._drop(req)
            return False
        self._release_window(req)
        self.running.append(req)
        return True

    def _decode(self) -> None:
        for req in self.running:
            req.tokens.append(self._fresh_tokens(1)[0])
            req.full.append(None)
            req.swa.append(None)
            req.states.append(None)
        for name, attr in (("full", "full"), ("swa", "swa")):
            pages: list[int] = []  # stays empty if every running request is preempted
            while self.running:
                try:
                    pages = self._alloc_each_evicting(name, [r.owner for r in self.running])
                    break
                except OutOfPagesError:
                    self._drop(self.running.pop())  # preempt the newest
            for req, p in zip(self.running, pages, strict=True):
                getattr(req, attr)[-1] = p
        for req in list(self.running):
            req.out_left -= 1
            self._release_window(req)
            if len(req.tokens) % INTERVAL == 0 or req.out_left == 0:
                try:
                    self._get(req, "mamba", [len(req.tokens) - 1], req.states)
                except OutOfPagesError:
                    self.running.remove(req)
                    self._drop(req)

    def _finish(self, req: _Req) -> None:
        self.running.remove(req)
        self.tree.insert(req.tokens, {"full": req.full, "swa": req.swa, "mamba": req.states})
        self.alloc.free("mamba", req.work)
        self._unlock(req)

    # --------------------------------------------------------------------------------------- helpers
    def _fresh_tokens(self, n: int) -> list[int]:
        self.next_token += n
        return list(range(self.next_token - n, self.next_token))

    def _get(self, req: _Req, name: str, positions, into: list[int | None]) -> None:
        positions = list(positions)
        for i, p in zip(positions, self._alloc_evicting(name, len(positions), req.owner), strict=True):
            into[i] = p

    def _alloc_evicting(self, name: str, n: int, owner: int) -> list[int]:
        for _ in range(8):
            try:
                return self.alloc.alloc(name, n, owner)
            except OutOfPagesError as err:
                if not self._evict_for(err):
                    raise
        return self.alloc.alloc(name, n, owner)

    def _alloc_each_evicting(self, name: str, owners: list[int]) -> list[int]:
        for _ in range(8):
            try:
                return self.alloc.alloc_each(name, owners)
            except OutOfPagesError as err:
                if not self._evict_for(err):
                    raise
        return self.alloc.alloc_each(name, owners)

    def _evict_for(self, err: OutOfPagesError) -> bool:
        return self.tree.evict_for(err.type_name, err.requested).bytes_freed > 0

    def _release_window(self, req: _Req) -> None:
        pol = self.tree.policies[1]
        out = [p for i in pol.releasable_pages(len(req.tokens)) if (p := req.swa[i]) is not None]
        for i in pol.releasable_pages(len(req.tokens)):
            req.swa[i] = None
        self.alloc.free("swa", out)

    def _drop(self, req: _Req) -> None:
        for name, pages in (("full", req.full), ("swa", req.swa), ("mamba", req.states)):
            self.alloc.free(name, [p for p in pages if p is not None])
        self.alloc.free("mamba", req.work)
        self._unlock(req)

    def _unlock(self, req: _Req) -> None:
        if req.handle is not None:
            self.tree.unlock(req.handle)
        self.alloc.close_owner(req.owner)


def _run(seed: int) -> tuple[list[float], TwoLevelAllocator, TypedRadixTree]:
    sim = _Sim(seed)
    fractions = []
    for step in range(600):
        sim.step()
        if step >= 150:
            fractions.append(sim.holes_fraction())
    return fractions, sim.alloc, sim.tree


@pytest.mark.parametrize("seed", range(8))  # seeds 0, 2, 5, 6 have steps with no running request
def test_fragmentation_below_one_percent_at_steady_state(seed: int) -> None:
    fractions, alloc, tree = _run(seed)
    assert tree.stats().cached_bytes > alloc.stats().bytes_total // 4, "the cache should be under pressure"
    mean = sum(fractions) / len(fractions)
    assert mean < 0.01, f"mean fragmentation {mean:.4f}"
    assert max(fractions) < 0.02, f"max fragmentation {max(fractions):.4f}"
    alloc.check_integrity()
    tree.check_integrity()
