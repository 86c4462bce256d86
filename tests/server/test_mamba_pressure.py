"""Tiny falcon_h1 at one small fixed budget: sglang's default manager against `--memory-manager jenga`.

The budget is 1200 tokens of attention KV + 12 Mamba states (`--max-mamba-cache-size 12`), sglang's
default 4096-token chunks. The default manager caps running requests at its state slots / 3 (it
reserves three slots per running request: its state and checkpoint copies); jenga has the same bytes
in its shared buffer, runs more requests at once, and evicts cached states and tokens on the way.
Outputs must match token for token; after `/flush_cache` every jenga page is free. Servers and
flags as in test_mamba_serving.py; a module of its own so no other pair idles beside this one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import (
    Pair,
    assert_all_free,
    flush,
    greedy,
    greedy_many,
    jenga_stats,
    mamba_pair,
    max_running,
    on_all,
)

from sglang_jenga.server import Server

pytestmark = pytest.mark.slow

NEW = 8

SMALL_STATES, SMALL_TOKENS = 12, 1200
BURST = [list(range(20 + 11 * k, 44 + 11 * k)) for k in range(16)]  # 16 requests of 24 tokens


@pytest.fixture(scope="module")
def small(zoo: Callable[[str], Path]) -> Iterator[Pair]:
    with mamba_pair(zoo, "falcon_h1", states=SMALL_STATES, tokens=SMALL_TOKENS) as p:
        yield p


def test_jenga_runs_more_requests_than_the_state_slots_allow(small: Pair) -> None:
    default, jenga = on_all(small, lambda s: (flush(s), greedy_many(s, BURST, 24))[1])
    assert [r["ids"] for r in default] == [r["ids"] for r in jenga]
    most = [max_running(s.log()) for s in small]
    cap = re.search(r"max_running_requests is capped to (\d+) by the mamba state cache", small.default.log())
    assert cap is not None, "the default manager did not cap running requests by its state slots"
    print(f"max running requests: default {most[0]} (capped at {cap[1]} by {SMALL_STATES} state slots), "
          f"jenga {most[1]}: {most[1] / most[0]:.2f}x")
    assert most[0] <= int(cap[1]) < most[1]


def test_outputs_match_while_states_and_tokens_are_evicted(small: Pair) -> None:
    """Distinct prompts and follow-ups overflow the small budget: cached states and tokens are
    evicted (each manager by its own policy, so hits may differ) and the tokens still match."""
    def run(server: Server) -> list[dict[str, Any]]:
        flush(server)
        out = []
        for k in range(10):
            prompt = list(range(200 + 50 * k, 240 + 50 * k))
            first = greedy(server, prompt, NEW)
            out += [first, greedy(server, prompt + first["ids"] + [k + 3], NEW)]
        return out

    default, jenga = on_all(small, run)
    assert [r["ids"] for r in default] == [r["ids"] for r in jenga]
    for a, b in zip(default, jenga, strict=True):
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-3)
    assert any(r["cached_tokens"] for r in jenga)
    evicted = {name: t["pages_evicted"] for name, t in jenga_stats(small.jenga)["types"].items()}
    assert evicted["mamba"] > 0 and evicted["full"] > 0, evicted
    flush(small.jenga)
    assert_all_free(jenga_stats(small.jenga))
