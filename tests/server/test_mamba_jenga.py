"""Mamba2 hybrids under `--memory-manager jenga` beside sglang's default manager, on real servers.

Both run `--mamba-radix-cache-strategy no_buffer` (the strategy that runs on CPU), so states are
checkpointed at the same places: a copy where a request's prefill (or a 64-token chunk of it) ends,
the request's own state where it finishes. A hit ends at the last checkpoint at or before the
full-attention match, so the same requests hit the same lengths on both and the outputs match token
for token.

Two budgets: a roomy one (4096 tokens + 8 states) for the checkpoint hits, and a small one
(1200 tokens + 12 states) where the default manager caps running requests at its state slots / 3
(sglang reserves three slots per running request: its state and checkpoint copies), and jenga has
the same bytes in its shared buffer: there jenga runs more requests at once, and evicts cached
states and tokens on the way. After `/flush_cache` every jenga page is free.

The schedulers run with OMP_NUM_THREADS=1 (see test_mamba_serving.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    max_running,
    on_both,
    started_pair,
)

from sglang_jenga.server import Server

pytestmark = pytest.mark.slow

MAMBA_ARGS = ("--mamba-radix-cache-strategy", "no_buffer", "--disable-overlap-schedule", "--chunked-prefill-size", "64")
PROMPT = list(range(5, 85))  # 80 tokens: prefilled in chunks of 64 and 16
NEW = 8


@contextmanager
def _pair(zoo: Callable[[str], Path], name: str, states: int, tokens: int) -> Iterator[Pair]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        with started_pair(zoo(name), *MAMBA_ARGS, "--max-mamba-cache-size", str(states),
                          max_total_tokens=tokens) as p:
            env.undo()
            yield p


@pytest.fixture(scope="module", params=["falcon_h1", "nemotron_h"])
def pair(request: pytest.FixtureRequest, zoo: Callable[[str], Path]) -> Iterator[Pair]:
    with _pair(zoo, request.param, states=8, tokens=4096) as p:
        yield p


def _conversation(server: Server) -> list[dict[str, Any]]:
    """Requests whose hits land on checkpoints: a finished request's end, a prefill's end, none."""
    flush(server)
    first = greedy(server, PROMPT, NEW)
    return [
        first,
        greedy(server, PROMPT + first["ids"] + [7, 8, 9], NEW),  # extends the finished request
        greedy(server, PROMPT + [300, 301, 302], NEW),  # diverges after the prompt: its prefill checkpoint
        greedy(server, PROMPT[:70] + [500, 501], NEW),  # diverges after the first chunk: its checkpoint
        greedy(server, PROMPT[:60] + [400, 401], NEW),  # diverges inside the first chunk: no state at or before 60
        greedy(server, PROMPT, NEW),  # the same prompt: a hit must leave a token to compute
    ]


def test_outputs_and_checkpoint_hits_match_the_default_manager(pair: Pair) -> None:
    default, jenga = on_both(pair, _conversation)
    for a, b in zip(default, jenga, strict=True):
        assert a["ids"] == b["ids"]
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)
    hits = [r["cached_tokens"] for r in jenga]
    assert hits == [r["cached_tokens"] for r in default]
    assert hits == [0, len(PROMPT) + NEW - 1, len(PROMPT), 64, 0, 64]


def test_batched_requests_match_the_default_manager(pair: Pair) -> None:
    """Six prompts of 7-12 tokens, 57 in all: however they are batched, none is split into chunks (a split
    changes the numerics, and where it falls depends on arrival timing)."""
    prompts = [list(range(10 + 13 * k, 17 + 14 * k)) for k in range(6)]
    default, jenga = on_both(pair, lambda s: (flush(s), greedy_many(s, prompts, NEW))[1])
    assert [r["ids"] for r in default] == [r["ids"] for r in jenga]


def test_flush_frees_every_page(pair: Pair) -> None:
    greedy_many(pair.jenga, [PROMPT, PROMPT + [9], list(range(100, 150))], NEW)
    stats = jenga_stats(pair.jenga)
    assert stats["types"]["mamba"]["pages_cached"] > 0
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))


# -- a small budget: the default manager's state slots against the same bytes under jenga ----------
SMALL_STATES, SMALL_TOKENS = 12, 1200
BURST = [list(range(20 + 11 * k, 44 + 11 * k)) for k in range(16)]  # 16 requests of 24 tokens


@pytest.fixture(scope="module")
def small(zoo: Callable[[str], Path]) -> Iterator[Pair]:
    with _pair(zoo, "falcon_h1", states=SMALL_STATES, tokens=SMALL_TOKENS) as p:
        yield p


def test_jenga_runs_more_requests_than_the_state_slots_allow(small: Pair) -> None:
    default, jenga = on_both(small, lambda s: (flush(s), greedy_many(s, BURST, 24))[1])
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

    default, jenga = on_both(small, run)
    assert [r["ids"] for r in default] == [r["ids"] for r in jenga]
    for a, b in zip(default, jenga, strict=True):
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-3)
    assert any(r["cached_tokens"] for r in jenga)
    evicted = {name: t["pages_evicted"] for name, t in jenga_stats(small.jenga)["types"].items()}
    assert evicted["mamba"] > 0 and evicted["full"] > 0, evicted
    flush(small.jenga)
    assert_all_free(jenga_stats(small.jenga))
