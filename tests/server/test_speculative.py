"""Speculative decoding under jenga, on sglang's Triton backend (cpu_runtime/triton_route.py): each case runs a
default-manager server and a jenga server with the same model, draft and flags, at `--page-size` 1 and 16.

- llama + EAGLE3 (the zoo's one-layer `llama_eagle` draft; tree drafts, top-k 2): the draft's layer sits in
  jenga's full-attention rows.
- mellum + STANDALONE (mellum drafting for itself: 1 full-attention + 3 sliding-window draft layers); at
  `--page-size 16` with a 512-token budget, small enough that the workload below evicts under both managers.
- gemma3 + NGRAM (no draft model, no draft KV).

Greedy outputs must be identical token for token, log-probabilities within 1e-5, and each request's verify steps
equal (a wrong draft KV under jenga changes which drafts are accepted, hence the steps). The draft layers show in
jenga's stats; after `/flush_cache` every page is free. Each case prints the average accept lengths and the token
capacity both managers give target + draft at the same budget (README, "Speculative decoding").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from serverkit import Pair, assert_all_free, flush, greedy, greedy_many, jenga_stats, on_all, started_pair

pytestmark = pytest.mark.slow

TRITON = ("--attention-backend", "triton", "--triton-attention-num-kv-splits", "1")
STORY = "Once the ferry stopped running, the islanders built a narrow causeway of stones and timber. "


class Case(NamedTuple):
    model: str
    args: tuple[str, ...]
    draft: str | None = None  # zoo model for --speculative-draft-model-path
    draft_layers: int = 0  # draft layers jenga stores (all types)
    paged_args: tuple[str, ...] = ()  # added at --page-size 16


EAGLE3 = Case("llama", ("--speculative-algorithm", "EAGLE3", "--speculative-num-steps", "2",
                        "--speculative-eagle-topk", "2", "--speculative-num-draft-tokens", "4"),
              draft="llama_eagle", draft_layers=1)
STANDALONE = Case("mellum", ("--speculative-algorithm", "STANDALONE", "--speculative-num-steps", "2",
                             "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "3"),
                  draft="mellum", draft_layers=4)
# sglang takes NGRAM's branching drafts (breadth 10) at page size > 1 on flashinfer only
NGRAM = Case("gemma3", ("--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "4"),
             paged_args=("--speculative-ngram-max-bfs-breadth", "1"))
CASES = {"llama+EAGLE3": EAGLE3, "mellum+STANDALONE": STANDALONE, "gemma3+NGRAM": NGRAM}
SMALL_BUDGET = {"mellum+STANDALONE@16": 512}  # tokens; the eviction test runs on these cases (4096 otherwise)


@pytest.fixture(scope="module", params=[f"{name}{page}" for name in CASES for page in ("", "@16")])
def case(request: pytest.FixtureRequest, zoo: Callable[[str], Path]) -> Iterator[tuple[str, Case, Pair]]:
    """"NAME" or "NAME@16" (at --page-size 16): the default-manager and jenga servers of that case."""
    name, _, page_size = request.param.partition("@")
    c = CASES[name]
    args = (*TRITON, *c.args, *(("--page-size", page_size, *c.paged_args) if page_size else ()),
            *(("--speculative-draft-model-path", str(zoo(c.draft))) if c.draft else ()))
    budget = SMALL_BUDGET.get(request.param, 4096)
    with started_pair(zoo(c.model), *args, max_total_tokens=budget) as pair:
        yield request.param, c, pair


def _same(d: dict[str, Any], j: dict[str, Any]) -> None:
    assert j["ids"] == d["ids"]
    assert j["logprobs"] == pytest.approx(d["logprobs"], abs=1e-5)


def _state(s: Any) -> dict[str, Any]:
    return dict(s.get("/server_info")["internal_states"][0])


def test_outputs_and_verify_steps_match_default(case: tuple[str, Case, Pair]) -> None:
    """A prompt, one extending it (a prefix hit), then a concurrent batch: same tokens; the sequential requests
    also take the same verify steps. (A concurrent batch's prefix hits and batch shapes depend on when each
    request arrives, which moves the draft's near-ties: mellum's verify steps there differed by one under either
    manager's timing, with identical outputs, 2026-12-07.)"""
    name, _, pair = case
    for prompt, n in [(STORY * 2, 12), (STORY * 2 + "What did they build?", 10)]:
        d, j = on_all(pair, lambda s, p=prompt, k=n: greedy(s, p, k))
        _same(d, j)
        assert j["verify_steps"] == d["verify_steps"] > 0, name
    assert j["cached_tokens"] > 0
    batch = [STORY + f" Chapter {k}." for k in range(3)]
    for d, j in zip(*on_all(pair, lambda s: greedy_many(s, batch, 6)), strict=True):
        _same(d, j)
    accept = [_state(s).get("avg_spec_accept_length") for s in pair]
    print(f"\n{name}: average accept length default {accept[0]:.3f}, jenga {accept[1]:.3f}")


@pytest.mark.parametrize("case", list(SMALL_BUDGET), indirect=True)
def test_eviction_under_speculation(case: tuple[str, Case, Pair]) -> None:
    """Distinct prompts one after the other, more than the budget caches: the tree evicts (under the small
    budget), outputs stay identical, and every page is free after a flush."""
    _, _, pair = case
    prompts = [f"Island {k}: " + STORY * 5 for k in range(14)]
    for prompt in prompts:
        d, j = on_all(pair, lambda s, p=prompt: greedy(s, p, 4))
        _same(d, j)
    stats = jenga_stats(pair.jenga)
    assert sum(t["pages_evicted"] for t in stats["types"].values()) > 0, stats
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))


def test_draft_layers_in_stats_and_all_free_after_flush(case: tuple[str, Case, Pair]) -> None:
    name, c, pair = case
    greedy(pair.jenga, STORY * 3 + name, 8)
    stats = jenga_stats(pair.jenga)
    types = stats["types"].values()
    assert sum(t["draft_layers"] for t in types) == c.draft_layers
    if c.draft_layers:
        assert all(t["draft_bytes_used"] > 0 for t in types if t["draft_layers"])
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))


def test_capacity_at_one_budget(case: tuple[str, Case, Pair]) -> None:
    """The tokens each manager gives target + draft at the same --max-total-tokens budget (sglang: the target's
    pools plus a draft pool of as many slots; jenga: one buffer whose rows hold the draft's layers too)."""
    name, _, pair = case
    default, jenga = (_state(s)["memory_usage"] for s in pair)
    # jenga keeps one large page back (its padding page): a full-attention-only model may give one page less
    assert jenga["token_capacity"] >= 0.99 * default["token_capacity"] > 0
    swa = f", sliding-window {default['token_capacity_swa']} vs {jenga['token_capacity_swa']}" \
        if default.get("token_capacity_swa") else ""
    print(f"\n{name}: full-attention tokens default {default['token_capacity']}, jenga {jenga['token_capacity']} "
          f"({jenga['token_capacity'] / default['token_capacity']:.2f}x){swa}")
