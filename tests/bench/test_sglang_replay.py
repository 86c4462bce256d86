"""Replays through sglang 0.5.23's real allocators and UnifiedRadixCache (one sglang import for the module):
the uniform-waste figures with exact expected numbers, scheduler invariants, determinism, the tuned sweep, and
the compare pipeline in --quick mode."""

from __future__ import annotations

import json

import pytest

from sglang_jenga.bench.replay import ReplayConfig, make_manager, replay, run
from sglang_jenga.bench.traces import TraceRequest, generate


@pytest.fixture(scope="module", autouse=True)
def _sglang() -> None:
    from sglang_jenga.bench.sgl_build import init_sglang

    init_sglang()


# One request, output_len 2: the only recorded step is the one after its prefill, at kv_len = prompt_len.
WASTE_CASES = [
    # mllama: 6404 encoder + 36 text rows in all 40 layers; readable: 32 self x 36 + 8 cross x 6404
    ("mllama-11b", 36, 6404, 8.0, (32 * 6404 + 8 * 36) / (40 * 6440)),
    # Ministral at 128k: 27 of 36 layers read only the last 32,768 of 131,072 tokens
    ("ministral-8b", 131_072, 0, 20.0, 27 / 36 * (131_072 - 32_768) / 131_072),
    # Gemma-2 at 8k: 21 of 42 layers read only the last 4,096 of 8,192 tokens
    ("gemma-2-9b", 8_192, 0, 4.0, 21 / 42 * (8_192 - 4_096) / 8_192),
]


@pytest.mark.parametrize(("model", "prompt", "image", "gib", "expect"), WASTE_CASES, ids=[c[0] for c in WASTE_CASES])
def test_uniform_waste_exact_and_jenga_under_one_percent(model: str, prompt: int, image: int, gib: float,
                                                         expect: float) -> None:
    trace = [TraceRequest("r", 0.0, prompt, 2, None, 0, image)]
    uniform = run("uniform", model, gib, trace)
    assert uniform["waste_fraction"] == pytest.approx(expect, abs=1e-6)
    assert run("jenga", model, gib, trace)["waste_fraction"] < 0.01


def test_expected_figures_match_the_paper() -> None:
    assert WASTE_CASES[1][4] == 0.5625 and WASTE_CASES[2][4] == 0.25
    assert abs(WASTE_CASES[0][4] - 0.796) < 0.001


@pytest.mark.parametrize(("model", "gib"), [("gpt-oss-120b", 0.25), ("nemotron-h-8b", 2.0),
                                            ("llama-3.1-8b", 0.25), ("mllama-11b", 2.0)])
def test_every_request_finishes_and_memory_returns(model: str, gib: float) -> None:
    trace = generate("multiturn", 30, seed=1, rate=100.0)
    if model == "mllama-11b":
        trace = generate("mmmu", 12, seed=1)
    manager = make_manager("sglang", model, gib, trace)
    result = replay(manager, trace, ReplayConfig(check_every=25, reserve=2))
    assert result["finished"] == len(trace) and result["rejected"] == 0
    assert manager.usage().bytes_total <= gib * (1 << 30)
    assert manager.drain()


def test_retractions_under_pressure() -> None:
    trace = generate("chat", 40, seed=2, rate=1000.0)
    result = run("sglang", "gpt-oss-120b", 0.1, trace, ReplayConfig(reserve=1))
    assert result["retractions"] > 0
    assert result["finished"] + result["rejected"] == len(trace)  # one request outgrows the pool alone


def test_same_trace_same_json() -> None:
    trace = generate("multiturn", 24, seed=3, rate=100.0)
    runs = [json.dumps(run("sglang", "gpt-oss-120b", 0.2, trace)) for _ in range(2)]
    assert runs[0] == runs[1]


def test_mamba_slots_cap_running_requests() -> None:
    trace = generate("chat", 30, seed=4, rate=1000.0)
    manager = make_manager("sglang", "nemotron-h-8b", 2.0, trace)
    assert manager.max_running == manager.mamba_slots // 3  # type: ignore[attr-defined]
    result = replay(manager, trace)
    assert result["max_running"] <= manager.max_running < run("jenga", "nemotron-h-8b", 2.0, trace)["max_running"]


def test_tuned_sweeps_ratios() -> None:
    trace = generate("longdoc", 4, seed=1, min_doc=3_000, max_doc=5_000)
    tuned = run("sglang-tuned", "gpt-oss-120b", 0.3, trace)
    assert tuned["manager"] == "sglang-tuned" and len(tuned["sweep"]) >= 5
    assert tuned["mean_running"] == max(tuned["sweep"].values())


def test_compare_quick(capsys: pytest.CaptureFixture[str]) -> None:
    from sglang_jenga.bench import compare

    assert compare.main(["--quick", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "| llama-3.1-8b | quick-chat |" in out and "| ministral-8b | quick-doc |" in out
    assert "PASS llama-3.1-8b/quick-chat" in out
