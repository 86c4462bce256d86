"""Hypothesis state machine over jenga's sglang adapter, one per family (full + SWA, full + cross-attention,
full + Mamba), driven through sglang's own functions (adapterkit): requests are matched, locked and prefilled
in random chunks (a checkpoint after each; cross-attention models in one chunk, as sglang serves mllama),
decode in random batches, release out-of-window SWA slots, and leave by finishing (checkpoint), retraction
or abort (no checkpoint); the tree cache evicts on demand. A small pool keeps eviction and refusals
frequent.

Before a prefill chunk the machine asks the adapter's capacity answer (evict until the chunk's pages fit,
then `fits`), as the scheduler's budget does; once that says yes, sglang's allocation must not fail. A decode
step asks `check_decode_capacity` and retracts the newest request when it says no, as the scheduler does.

Invariant after every step: the manager's and the tree cache's integrity, and every running row against both
(adapterkit._assert_integrity). Teardown: every request released, flush, every large page free.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import hypothesis.strategies as st
from adapterkit import (
    IMAGE_PAD,
    MAMBA,
    _assert_all_free,
    _assert_integrity,
    _make_req,
    _make_rig,
    admit,
    after_prefill,
    alloc_extend,
    decode,
    evict,
    finish,
    flush,
    retract,
    slide,
)
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

BASES = (list(range(16)), list(range(8)) + list(range(20, 28)), list(range(30, 46)))
# shared prompts cut anywhere plus a random tail: many prefixes in common, hits at and between checkpoints
PROMPTS = st.builds(lambda base, cut, tail: (base[:cut] + tail)[:24] or [0], st.sampled_from(BASES),
                    st.integers(0, 16), st.lists(st.integers(50, 53), max_size=6))
MAX_LEN = 40  # tokens a request may reach (the rows hold 96)
PICK = st.integers(0, 1 << 16)
BATCH = st.lists(st.tuples(PROMPTS, st.sampled_from([None, 1, 2])), min_size=1, max_size=2)  # (tokens, image)
CHUNK = st.integers(1, 12)
THEN = st.sampled_from(["run", "run", "run", "finish", "abort"])  # what happens after a prefill chunk


class AdapterMachine(RuleBasedStateMachine):
    FAMILY = "swa"
    NUM_LARGE = 24
    PAGE_SIZE = 1  # sglang's --page-size: tokens per small page of a token type

    @initialize(prompts=BATCH, chunk=CHUNK)
    def setup(self, prompts: list[tuple[list[int], int | None]], chunk: int) -> None:
        """The pools, then a first prefill batch (so every run has requests to work on)."""
        extra = {"page_size": self.PAGE_SIZE} if self.PAGE_SIZE > 1 else {}
        self.rig = _make_rig(self.FAMILY, num_large=self.NUM_LARGE, **extra)
        self.chunk: dict[int, int] = {}  # id(req) -> its prefill chunk size, while it prefills
        self.prefilling: list[Any] = []
        self.decoding: list[Any] = []
        self.seen: list[tuple[list[int], int | None]] = []  # sequences of retracted requests, to come back
        self._start(prompts, chunk, "run")

    @property
    def running(self) -> list[Any]:
        return self.prefilling + self.decoding

    # ------------------------------------------------------------------------------------------- helpers
    def _demand(self, batch: list[tuple[Any, int]]) -> Counter[str]:
        """Pages the batch's extend needs per type (the plan's split, plus a state for each new request); at
        page size P a request's tokens [prefix, end) need pages ceil(prefix / P) .. ceil(end / P) - 1."""
        rig, demand, P = self.rig, Counter[str](), self.PAGE_SIZE
        for r, end in batch:
            enc = rig.cache.encoder_len(r)
            cross = enc if r.prefix_len < enc else 0
            for name in rig.manager.token_types:
                demand[name] += -(-(end - cross) // P) - -(-r.prefix_len // P)
            demand["cross"] += cross
            demand[MAMBA] += rig.family == MAMBA and not r.kv.holds_mamba
        return +demand

    def _fits(self, batch: list[tuple[Any, int]]) -> bool:
        demand = self._demand(batch)
        self.rig.cache.evict_until_allocatable(demand)
        return bool(self.rig.manager.fits(demand))

    def _end(self, r: Any) -> int:
        """Where the request's next prefill chunk ends."""
        return min(len(r.origin_input_ids), r.prefix_len + self.chunk[id(r)])

    def _extend(self, batch: list[tuple[Any, int]], then: str = "run") -> None:
        """Allocate the batch (the adapter said it fits: sglang's allocation must not fail), then process the
        results; `then` decides the first request's: "run" on (checkpoint), "finish" (if its prompt is done:
        max_new_tokens 1) or "abort", both straight away, before any checkpoint of this chunk."""
        alloc_extend(self.rig, batch)
        for k, (r, end) in enumerate(batch):
            done = end == len(r.origin_input_ids)
            if k == 0 and then == "abort":
                event("extend: aborted before its checkpoint")
                retract(self.rig, r)
                self._release(r)
            elif k == 0 and then == "finish" and done:
                event("extend: finished at its prefill")
                finish(self.rig, r)
                self._release(r)
            else:
                after_prefill(self.rig, r)
                if done:
                    self.prefilling.remove(r)
                    self.decoding.append(r)

    def _release(self, r: Any) -> None:
        (self.prefilling if r in self.prefilling else self.decoding).remove(r)

    def _pick(self, reqs: list[Any], i: int) -> Any:
        return reqs[i % len(reqs)]

    def _subset(self, reqs: list[Any], mask: int) -> list[Any]:
        return [r for i, r in enumerate(reqs) if mask >> i & 1] or reqs[:1]

    # --------------------------------------------------------------------------------------------- rules
    @rule(prompts=BATCH, chunk=CHUNK, again=PICK, then=THEN)
    def start(self, prompts: list[tuple[list[int], int | None]], chunk: int, again: int, then: str) -> None:
        """New requests in one prefill batch (or a retracted one coming back): match, lock, first chunk."""
        if self.seen and again % 3 == 0:
            prompts = [self.seen.pop(again % len(self.seen))]
            event("start: a retracted request comes back")
        self._start(prompts, chunk, then)

    def _start(self, prompts: list[tuple[list[int], int | None]], chunk: int, then: str) -> None:
        rig = self.rig
        if rig.req_pool.available_size() < len(prompts):
            return
        reqs = [_make_req(rig, toks, image if rig.family == "cross" else None) for toks, image in prompts]
        for r in reqs:
            event("start: hit" if admit(rig, r) else "start: miss")
            self.chunk[id(r)] = 1 << 20 if rig.family == "cross" else chunk
        batch = [(r, self._end(r)) for r in reqs]
        if not self._fits(batch):
            event("start: refused")
            for r in reqs:  # the budget refused them: drop the match (and a copied-on-write state)
                rig.cache.unlock(r.lock)
                if r.kv.holds_mamba:
                    rig.req_pool.free_mamba_cache(r)
            return
        self.prefilling += reqs
        self._extend(batch, then)

    @precondition(lambda self: self.prefilling)
    @rule(i=PICK, then=THEN)
    def prefill_chunk(self, i: int, then: str) -> None:
        r = self._pick(self.prefilling, i)
        batch = [(r, self._end(r))]
        if self._fits(batch):
            event("chunk")
            self._extend(batch, then)
        else:
            event("chunk: refused")

    @precondition(lambda self: self.decoding)
    @rule(mask=PICK, steps=st.integers(1, 8), windows=st.booleans())
    def decode_steps(self, mask: int, steps: int, windows: bool) -> None:
        """A few decode steps of a random batch; each asks check_decode_capacity first and retracts the newest
        request when the step does not fit, as the scheduler does. With `windows` (SWA models), out-of-window
        slots are released before each step (alloc_for_decode's maybe_evict_swa at eviction interval 1)."""
        rig = self.rig
        for _ in range(steps):
            reqs = [r for r in self._subset(self.decoding, mask) if r.kv.kv_committed_len < MAX_LEN]
            if not reqs:
                return
            if windows and rig.family == "swa":
                self._slide(reqs)
            # sglang's demand (ScheduleBatch.new_tokens_required_next_decode): a page for each request whose next
            # token starts one
            P = self.PAGE_SIZE
            need = sum(1 for r in reqs if r.kv.kv_committed_len % P == 0) * P
            if not rig.allocator.check_decode_capacity(num_tokens=need, tree_cache=rig.cache):
                event("decode: retract for room")
                self._retract(self.decoding[-1])
                return
            decode(rig, reqs)
            event(f"decode: batch of {min(len(reqs), 3)}{'+' if len(reqs) > 3 else ''}")

    @precondition(lambda self: self.decoding and self.FAMILY == "swa")
    @rule(mask=PICK)
    def slide_windows(self, mask: int) -> None:
        self._slide(self._subset(self.decoding, mask))

    def _slide(self, reqs: list[Any]) -> None:
        held = len(self.rig.manager.held_pages()["swa"])
        slide(self.rig, reqs)
        event("slide: released" if len(self.rig.manager.held_pages()["swa"]) < held else "slide: nothing")

    @rule(full=st.integers(0, 12), swa=st.integers(0, 12), mamba=st.integers(0, 3))
    def evict_cache(self, full: int, swa: int, mamba: int) -> None:
        """tree_cache.evict: the counts it reports are the pages that went back to the allocator, and what
        sglang counts as evictable becomes available (a cross-attention large page counts as the full slots
        it displaces, so for cross models the full count is checked on the available slots)."""
        rig, alloc = self.rig, self.rig.manager.allocator
        asked = {"full": full, "swa": swa if rig.family == "swa" else 0, MAMBA: mamba if rig.family == MAMBA else 0}
        evictable = {"full": rig.cache.full_evictable_size(), "swa": rig.cache.swa_evictable_size()}
        used = {t.name: t.pages_used for t in alloc.stats().types}
        free = {n: alloc.of(n).available() for n in evictable if n in used}
        got = evict(rig, asked["full"], asked["swa"], asked[MAMBA])
        reported = {"full": got.num_tokens_evicted, "swa": got.swa_num_tokens_evicted, MAMBA: got.mamba_num_evicted}
        P = self.PAGE_SIZE  # sglang counts tokens: P per page of a token type
        for name, before in used.items():
            if name != "cross":
                assert (before - alloc.of(name).pages_used) * (1 if name == MAMBA else P) == reported[name], name
        for name, before in free.items():
            assert (alloc.of(name).available() - before) * P >= min(asked[name], evictable[name]), name
        event("evict: freed" if any(used[n] != alloc.of(n).pages_used for n in used) else "evict: nothing")

    @precondition(lambda self: self.running)
    @rule(how=st.sampled_from(["finish", "retract", "abort"]), i=PICK)
    def leave(self, how: str, i: int) -> None:
        """A request leaves: it finishes (checkpoint), is retracted (no checkpoint; it comes back later with
        what it generated) or aborted (no checkpoint, also in the middle of a chunked prefill)."""
        if how != "abort" and not self.decoding:
            how = "abort"
        r = self._pick(self.running if how == "abort" else self.decoding, i)
        if how == "finish":
            event("leave: finish")
            finish(self.rig, r)
            self._release(r)
        elif how == "retract":
            self._retract(r)
        else:
            event("leave: abort mid-prefill" if r in self.prefilling else "leave: abort while decoding")
            retract(self.rig, r)
            self._release(r)

    def _retract(self, r: Any) -> None:
        event("leave: retract")
        retract(self.rig, r)
        self._release(r)
        enc = self.rig.cache.encoder_len(r)
        text = list(r.origin_input_ids)[enc:] + list(r.output_ids)
        if len(text) + enc < MAX_LEN:
            self.seen.append((text, int(r.origin_input_ids[0]) - IMAGE_PAD if enc else None))

    # ------------------------------------------------------------------------------------------ checks
    @invariant()
    def integrity(self) -> None:
        _assert_integrity(self.rig, self.running)

    def teardown(self) -> None:
        rig = getattr(self, "rig", None)
        if rig is None:
            return
        for r in list(self.prefilling):
            retract(rig, r)
        for r in list(self.decoding):
            finish(rig, r)
        self.prefilling, self.decoding = [], []
        _assert_integrity(rig)
        flush(rig)
        _assert_all_free(rig)


SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class SwaMachine(AdapterMachine):
    FAMILY, NUM_LARGE = "swa", 20


class SwaPagedMachine(AdapterMachine):
    """The full + SWA family at sglang's --page-size 4 (window 4: a window spans two or three pages)."""

    FAMILY, NUM_LARGE, PAGE_SIZE = "swa", 20, 4


class CrossMachine(AdapterMachine):
    FAMILY, NUM_LARGE = "cross", 14


class MambaMachine(AdapterMachine):
    FAMILY, NUM_LARGE = "mamba", 10


TestSwa = SwaMachine.TestCase
TestSwaPaged = SwaPagedMachine.TestCase
TestCross = CrossMachine.TestCase
TestMamba = MambaMachine.TestCase
TestSwa.settings = TestSwaPaged.settings = TestCross.settings = TestMamba.settings = SETTINGS
