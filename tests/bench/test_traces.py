"""Trace format round trip, seeded generators, and the token materialisation of shared prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sglang_jenga.bench import traces
from sglang_jenga.bench.traces import TraceRequest, dump, generate, load, materialize


@pytest.mark.parametrize("kind", sorted(traces.GENERATORS))
def test_round_trip_and_seeded(kind: str, tmp_path: Path) -> None:
    trace = generate(kind, 25, seed=3)
    path = tmp_path / "t.jsonl"
    dump(trace, path)
    assert load(path) == trace
    assert generate(kind, 25, seed=3) == trace
    assert generate(kind, 25, seed=4) != trace
    assert len(trace) == 25


def test_line_format(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    dump([TraceRequest("a", 0.5, 10, 3, "g", 4, 6404)], path)
    line = json.loads(path.read_text().splitlines()[0])
    assert line == {"id": "a", "arrival_s": 0.5, "prompt_len": 10, "output_len": 3, "prefix_group": "g",
                    "prefix_len": 4, "image_tokens": 6404}


@pytest.mark.parametrize("bad", [
    {"prompt_len": 0}, {"output_len": 0}, {"prefix_len": 10}, {"prefix_len": 2, "prefix_group": None},
    {"image_tokens": -1},
])
def test_rejects_bad_fields(bad: dict[str, object]) -> None:
    fields = {"id": "a", "arrival_s": 0.0, "prompt_len": 10, "output_len": 3, "prefix_group": "g",
              "prefix_len": 0} | bad
    with pytest.raises(ValueError):
        TraceRequest(**fields)  # type: ignore[arg-type]


def test_validate_order_and_chains() -> None:
    a, b = TraceRequest("a", 1.0, 10, 2), TraceRequest("b", 0.0, 10, 2)
    with pytest.raises(ValueError, match="sorted"):
        traces.validate([a, b])
    with pytest.raises(ValueError, match="unique"):
        traces.validate([b, b])
    first, second = TraceRequest("x", 0.0, 10, 2, "g", 0), TraceRequest("y", 1.0, 20, 2, "g", 13)
    with pytest.raises(ValueError, match="exceeds"):
        traces.validate([first, second])  # x has only 12 tokens


def test_materialize_documents_share_exactly_the_prefix() -> None:
    trace = [TraceRequest("q0", 0.0, 30, 5, "doc", 25), TraceRequest("q1", 1.0, 28, 5, "doc", 25),
             TraceRequest("other", 2.0, 30, 5)]
    tok = materialize(trace)
    q0, q1, other = tok["q0"].seq, tok["q1"].seq, tok["other"].seq
    assert len(q0) == 35 and len(q1) == 33
    assert np.array_equal(q0[:25], q1[:25])
    assert q0[25] != q1[25]
    assert not set(other.tolist()) & (set(q0.tolist()) | set(q1.tolist()))
    assert tok["q0"].image_key is None


def test_materialize_sessions_reuse_previous_turn_with_output() -> None:
    trace = generate("multiturn", 40, seed=5)
    tok = materialize(trace)
    last: dict[str, TraceRequest] = {}
    checked = 0
    for r in trace:
        prev = last.get(r.prefix_group) if r.prefix_group else None
        if prev is not None:
            assert r.prefix_len == prev.total_len
            assert np.array_equal(tok[r.id].seq[:r.prefix_len], tok[prev.id].seq)
            checked += 1
        last[r.prefix_group or r.id] = r
    assert checked > 5


def test_images_are_shared_within_a_group() -> None:
    trace = [TraceRequest("i0-q0", 0.0, 40, 5, "i0", 0, 6404), TraceRequest("i0-q1", 0.1, 30, 5, "i0", 0, 6404),
             TraceRequest("i1-q0", 0.2, 40, 5, "i1", 0, 6404)]
    tok = materialize(trace)
    assert tok["i0-q0"].image_key == tok["i0-q1"].image_key != tok["i1-q0"].image_key


def test_generator_statistics_follow_the_cited_means() -> None:
    chat = generate("chat", 4000, seed=0)
    assert 140 < np.mean([r.prompt_len for r in chat]) < 185  # ShareGPT 161.31 (clipped lognormal)
    assert 300 < np.mean([r.output_len for r in chat]) < 380  # ShareGPT 337.99
    docs = generate("longdoc", 60, seed=0)
    assert all(30_000 <= r.prefix_len <= 90_000 for r in docs)
    assert len({r.prefix_group for r in docs}) < len(docs)  # documents are shared
    mm = generate("mmmu", 50, seed=0)
    assert all(r.image_tokens == 6404 for r in mm)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.jsonl"
    assert traces.main(["longdoc", "--n", "5", "--seed", "2", "--out", str(out), "--max-doc", "31000"]) == 0
    assert load(out) == generate("longdoc", 5, 2, max_doc=31_000)
    assert "5 requests" in capsys.readouterr().out
