"""The replay scheduler's invariants with the Jenga manager (no sglang import): integrity after every step,
every request finishes, the budget holds, all pages free at the end, determinism."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sglang_jenga.bench.jenga_manager import JengaManager
from sglang_jenga.bench.managers import Seq
from sglang_jenga.bench.replay import ReplayConfig, replay
from sglang_jenga.bench.traces import TraceRequest, generate
from sglang_jenga.core import (
    ChunkedLocalSpec,
    CrossAttentionSpec,
    FullAttentionSpec,
    MambaSpec,
    ModelSpec,
    SlidingWindowSpec,
)

TINY: dict[str, int] = {"kv_heads": 1, "head_dim": 1, "dtype_bytes": 1}  # 2 bytes per token per layer
MODELS = {
    "full": ModelSpec.of("toy-full", [(FullAttentionSpec(**TINY), 2)]),
    "swa": ModelSpec.of("toy-swa", [(FullAttentionSpec(**TINY), 1), (SlidingWindowSpec(window=24, **TINY), 3)]),
    "chunked": ModelSpec.of("toy-chunk", [(FullAttentionSpec(**TINY), 1), (ChunkedLocalSpec(chunk=32, **TINY), 3)]),
    "mamba": ModelSpec.of("toy-mamba", [(FullAttentionSpec(**TINY), 1),
                                        (MambaSpec(state_bytes_per_layer=48, checkpoint_interval=16), 2)]),
    "cross": ModelSpec.of("toy-mllama", [(FullAttentionSpec(**TINY), 4), (CrossAttentionSpec(encoder_tokens=40,
                                                                                             **TINY), 1)]),
}
CHECKED = ReplayConfig(check_every=1)


def _trace(kind: str) -> list[TraceRequest]:
    """Small traces with shared prefixes (documents or sessions) or images."""
    if kind == "cross":
        return [TraceRequest(f"r{i}", i * 0.01, 12 + i % 5, 6 + i % 4, f"img{i % 3}", 0, 40) for i in range(24)]
    docs = [TraceRequest(f"d{i}", i * 0.01, 70 + i % 7, 5 + (i * 7) % 11, f"doc{i % 4}", 64) for i in range(20)]
    chat = [TraceRequest(f"c{i}", 0.2 + i * 0.01, 10 + (i * 13) % 50, 3 + (i * 5) % 30) for i in range(20)]
    return docs + chat


def _manager(kind: str, pool_bytes: int) -> JengaManager:
    return JengaManager(MODELS[kind], pool_bytes, chunk=24)


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("pool_bytes", [6_000, 60_000])
def test_every_request_finishes_with_integrity(kind: str, pool_bytes: int) -> None:
    trace = _trace(kind)
    manager = _manager(kind, pool_bytes)
    result = replay(manager, trace, CHECKED)
    assert result["finished"] == len(trace) and result["rejected"] == 0
    assert result["output_tokens"] == sum(r.output_len for r in trace)
    assert manager.usage().bytes_total <= pool_bytes
    assert manager.drain()  # the cache evicts to nothing: every large page back in the pool
    assert manager.kv.allocator.large_pages_free == manager.kv.allocator.pool.total


def test_tight_budget_retracts_and_still_finishes() -> None:
    trace = _trace("swa")
    result = replay(_manager("swa", 4_000), trace, ReplayConfig(check_every=1, reserve=1))
    assert result["retractions"] > 0
    assert result["finished"] == len(trace)


def test_prefix_hits_and_window_waste() -> None:
    roomy = replay(_manager("swa", 200_000), _trace("swa"), CHECKED)
    assert roomy["hit_rate"] > 0.3  # documents and their shared 64-token prefix
    # the window the lock pins at the prompt end is held until the request is a window past it: with outputs
    # of 3-30 tokens and a 24-token window that is most of the waste here
    assert roomy["waste_fraction"] < 0.2


def test_memory_never_exceeds_the_budget_during_the_run() -> None:
    manager = _manager("mamba", 8_000)
    seen: list[int] = []
    original: Callable[[list[Seq]], bool] = manager.decode

    def decode(batch: list[Seq]) -> bool:
        ok = original(batch)
        usage = manager.usage()
        seen.append(usage.bytes_total - usage.bytes_free)
        assert 0 <= usage.bytes_free <= usage.bytes_total <= 8_000
        return ok

    manager.decode = decode  # type: ignore[method-assign]
    replay(manager, _trace("mamba"), CHECKED)
    assert max(seen) > 0.5 * 8_000


def test_rejects_a_request_that_never_fits() -> None:
    trace = [TraceRequest("big", 0.0, 5_000, 3), TraceRequest("small", 0.1, 10, 3)]
    result = replay(_manager("full", 4_000), trace, CHECKED)
    assert result["rejected"] == 1 and result["finished"] == 1


def test_same_trace_same_json() -> None:
    trace = generate("multiturn", 30, seed=2)
    runs = [json.dumps(replay(_manager("swa", 120_000), trace, ReplayConfig())) for _ in range(2)]
    assert runs[0] == runs[1]


def test_idle_gaps_are_skipped() -> None:
    trace = [TraceRequest("a", 0.0, 10, 3), TraceRequest("b", 1000.0, 10, 3)]
    result = replay(_manager("full", 4_000), trace, CHECKED)
    assert result["finished"] == 2
    assert result["steps"] == 6  # 3 each (admit, 2 decodes); the 1000 s gap costs no step
    assert result["mean_running"] == round(4 / 6, 4)  # the step that finishes a request does not count it
