"""A decode step's window release under jenga (the plugin's `ScheduleBatch.maybe_evict_swa` hook, which runs
`JengaRadixCache.release_windows`) against sglang's own loop: two identical SWA rigs get the same requests and
steps, one through each, and must release the same slots at the same steps. Real `ScheduleBatch`es, sglang's
own `maybe_evict_swa` (unwrapped from any hook), a small eviction interval so that releases come often."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from adapterkit import (
    Rig,
    _assert_integrity,
    _make_req,
    _make_swa,
    admit,
    decode,
    extend,
    finish,
    retract,
    swa_evicted,
)
from sglang.srt.managers.schedule_batch import Req, ScheduleBatch
from sglang.srt.model_executor.forward_batch_info import ForwardMode
from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

from sglang_jenga import plugin

SGLANG_LOOP = inspect.unwrap(ScheduleBatch.maybe_evict_swa)
WINDOW, INTERVAL = 4, 3


def _batch(rig: Rig, reqs: Sequence[Req], mode: ForwardMode = ForwardMode.DECODE) -> ScheduleBatch:
    """The decode batch sglang's prepare_for_decode holds when it releases windows (seq_lens: the KV held)."""
    return ScheduleBatch(
        reqs=list(reqs), req_to_token_pool=rig.req_pool, token_to_kv_pool_allocator=rig.allocator,
        tree_cache=rig.cache, forward_mode=mode, spec_algorithm=SpeculativeAlgorithm.NONE,
        req_pool_indices_cpu=torch.tensor([r.kv.req_pool_idx for r in reqs], dtype=torch.int64),
        seq_lens_cpu=torch.tensor([r.kv.kv_committed_len for r in reqs], dtype=torch.int64))


def _step(rig: Rig, reqs: Sequence[Req], release: Callable[[ScheduleBatch], Any]) -> None:
    """prepare_for_decode: window release, the step's allocation, then each request's decode_batch_idx."""
    release(_batch(rig, reqs))
    decode(rig, reqs)
    for r in reqs:
        r.decode_batch_idx += 1


def _state(rig: Rig, reqs: Sequence[Req]) -> tuple[list[int], dict[str, int]]:
    return [swa_evicted(r) for r in reqs], {t.name: t.pages_used for t in rig.manager.allocator.stats().types}


@pytest.fixture
def interval(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("SGLANG_SWA_EVICTION_INTERVAL", str(INTERVAL))
    return INTERVAL


def test_release_windows_matches_sglangs_loop(interval: int) -> None:
    rigs = {"sglang": _make_swa(num_large=256, window=WINDOW, req_slots=8),
            "jenga": _make_swa(num_large=256, window=WINDOW, req_slots=8)}
    releases: dict[str, Callable[[ScheduleBatch], Any]] = {
        "sglang": SGLANG_LOOP, "jenga": lambda batch: plugin._maybe_evict_swa(SGLANG_LOOP, batch)}
    running: dict[str, list[Req]] = {name: [] for name in rigs}

    def start(prompt: Sequence[int]) -> None:
        for name, rig in rigs.items():
            req = _make_req(rig, prompt)
            admit(rig, req)
            extend(rig, [(req, len(req.origin_input_ids))])
            running[name].append(req)

    for n in range(5, 10):  # staggered lengths: releases fall due at different steps
        start(list(range(100 * n, 100 * n + n)))
    released_at: set[int] = set()
    for step in range(60):
        if step == 30:  # a retraction frees a row that a new, shorter request takes (its cursor starts at 0)
            for name, rig in rigs.items():
                retract(rig, running[name].pop(1))
            start(list(range(7000, 7005)))
        if step == 45:
            for name, rig in rigs.items():
                finish(rig, running[name].pop(0))
        for name, rig in rigs.items():
            _step(rig, running[name], releases[name])
        (cursors, used), (jenga_cursors, jenga_used) = (_state(rigs[n], running[n]) for n in ("sglang", "jenga"))
        assert jenga_cursors == cursors and jenga_used == used, f"step {step}"
        if any(cursors):
            released_at.add(step)
        _assert_integrity(rigs["jenga"], running["jenga"])
    assert len(released_at) > 40  # not vacuous: releases happened along the way


def test_release_windows_leaves_other_batches_to_sglang(interval: int) -> None:
    rig = _make_swa(num_large=256, window=WINDOW, req_slots=8)
    req = _make_req(rig, list(range(20)))
    admit(rig, req)
    extend(rig, [(req, 20)])
    assert rig.cache.release_windows(_batch(rig, [req], ForwardMode.EXTEND)) is False
    speculative = _batch(rig, [req])
    speculative.spec_algorithm = SpeculativeAlgorithm.EAGLE
    assert rig.cache.release_windows(speculative) is False
    assert rig.cache.release_windows(_batch(rig, [req])) is True
