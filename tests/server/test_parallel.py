"""Tensor parallelism under jenga: `--tp 2`, default manager vs jenga side by side.

A tiny gemma3 with 2 KV heads, so each rank holds one head and sizes its own buffer from it. Every rank's
scheduler runs the same steps, so jenga must take the same decisions on each: every rank logs a digest of its
decisions when `/server_info` is read (plugin `_add_stats`), and the digests must agree, under load and after
`/flush_cache`, which must leave every page free. Greedy outputs and log-probs must equal the default
manager's. The server pair starts once and is always stopped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverkit import Pair, assert_all_free, flush, greedy_many, on_all, started_pair

pytestmark = pytest.mark.slow

STORY = "The ferry crossed the bay twice a day, and the gulls followed it from the pier to the island. "
PROMPTS = [STORY * k + f"Trip {k}." for k in range(1, 7)]
BUDGET_TOKENS = 700  # small enough that the six requests contend for memory
# Two ranks per server: rank r's model threads on core r (sglang wants one bind group per rank).
TWO_RANKS = {"SGLANG_CPU_OMP_THREADS_BIND": "0|1"}


def _two_kv_heads(zoo: Callable[..., Path], name: str, out: Path) -> Path:
    """Zoo model `name` with 2 KV heads (one per rank under --tp 2) instead of 1."""
    src = zoo(name)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    config = json.loads((out / "config.json").read_text())
    config["num_key_value_heads"] = 2
    (out / "config.json").write_text(json.dumps(config))
    return out


def _digests(log: str) -> dict[int, str]:
    """The latest decisions digest each TP rank logged."""
    return {int(rank): digest for rank, digest in re.findall(r"jenga decisions tp_rank=(\d+) dp_rank=\d+ "
                                                             r"digest=(\w+)", log)}


def _assert_same(default: list[dict], jenga: list[dict]) -> None:
    for a, b in zip(default, jenga, strict=True):
        assert a["ids"] == b["ids"]
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)


@pytest.fixture(scope="module")
def tp_pair(zoo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:  # noqa: ANN001
    model = _two_kv_heads(zoo, "gemma3", tmp_path_factory.mktemp("tp") / "gemma3-2kv")
    with started_pair(model, "--tp-size", "2", "--chunked-prefill-size", "64",
                      max_total_tokens=BUDGET_TOKENS, env=TWO_RANKS) as p:
        yield p


def test_tp2_outputs_match_and_ranks_decide_alike(tp_pair: Pair) -> None:
    _assert_same(*on_all(tp_pair, lambda s: greedy_many(s, PROMPTS, 40)))
    states = tp_pair.jenga.get("/server_info")["internal_states"]
    assert len(states) == 1 and "jenga" in states[0]
    digests = _digests(tp_pair.jenga.log())
    assert sorted(digests) == [0, 1] and len(set(digests.values())) == 1, digests
    flush(tp_pair.jenga)
    assert_all_free(tp_pair.jenga.get("/server_info")["internal_states"][0]["jenga"])
    after = _digests(tp_pair.jenga.log())
    assert len(set(after.values())) == 1 and after != digests, after
