"""Tiny gemma3 at one small fixed KV budget, default manager vs `--memory-manager jenga`.

The budget is 600 tokens of the default layout (6 layers of full-length KV, since sglang runs
Gemma-3 without hybrid sliding-window memory); jenga gets the same bytes. Twelve requests with
~45-token prompts and 80-token decodes arrive together. The default manager reserves each
request's whole decode at admission and queues the rest; jenga keeps only a window of sliding-
window KV per request, admits many more, and under this budget evicts cached pages and retracts
running requests (recomputing them later) on the way. Outputs must still match token for token; jenga must run more
requests at once. Also here: a request that can never fit is rejected while the server keeps
serving, an aborted request gives its pages back, and after `/flush_cache` every page is free.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import requests
from serverkit import (
    Pair,
    assert_all_free,
    flush,
    greedy,
    greedy_many,
    jenga_stats,
    max_running,
    on_all,
    started_pair,
)

pytestmark = pytest.mark.slow

BUDGET_TOKENS = 600
LINE = "The lighthouse keeper wrote down the weather, the ships and the birds every single evening. "
PROMPTS = [f"Log {k}: " + LINE * 2 + f"Entry number {k}." for k in range(12)]
NEW_TOKENS = 80


@pytest.fixture(scope="module")
def pair(zoo) -> Iterator[Pair]:  # noqa: ANN001
    # A low conservativeness admits requests on optimistic decode estimates, so running out of memory
    # mid-decode (and retracting) is part of the workload.
    args = ("--chunked-prefill-size", "128", "--schedule-conservativeness", "0.05")
    with started_pair(zoo("gemma3"), *args, max_total_tokens=BUDGET_TOKENS) as p:
        yield p


@pytest.fixture(scope="module")
def loaded(pair: Pair) -> list[list[dict]]:
    """The twelve requests on each server (run once; the tests below read the results)."""
    return on_all(pair, lambda s: greedy_many(s, PROMPTS, NEW_TOKENS))


def test_outputs_match_under_eviction_and_retraction(pair: Pair, loaded: list[list[dict]]) -> None:
    default, jenga = loaded
    for a, b in zip(default, jenga, strict=True):
        assert a["ids"] == b["ids"]
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)
    retracted = [sum(r["retractions"] for r in results) for results in loaded]
    print(f"\nretractions: default {retracted[0]}, jenga {retracted[1]}")
    # sglang's default manager reserves every request's whole decode up front at admission, so it
    # queues instead of retracting; jenga admits on sglang's sliding-window estimate and retracts.
    assert retracted[1] > 0, "the budget should force jenga to retract"
    evicted = jenga_stats(pair.jenga)["types"]
    assert evicted["swa"]["pages_evicted"] > 0, "jenga should have evicted sliding-window pages"


def test_jenga_runs_more_requests_at_once(pair: Pair, loaded: list[list[dict]]) -> None:
    default, jenga = (max_running(s.log()) for s in pair)
    print(f"\nmax running requests at a {BUDGET_TOKENS}-token budget: default {default}, jenga {jenga}, "
          f"ratio {jenga / default:.2f}")
    assert jenga > default


def test_oversized_request_is_rejected_and_server_keeps_serving(pair: Pair) -> None:
    too_long = LINE * 400  # far beyond the budget and the context length
    for s in pair:
        r = requests.post(s.url + "/generate", json={"text": too_long, "sampling_params": {"max_new_tokens": 4}},
                          timeout=120)
        assert r.status_code == 400, r.text
        assert len(greedy(s, "Still there?", 4)["ids"]) == 4


def test_aborted_request_frees_its_pages(pair: Pair) -> None:
    def long_request() -> None:
        payload = {"text": LINE * 4, "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}}
        # The client gives up mid-decode and disconnects; sglang aborts the request.
        with contextlib.suppress(requests.exceptions.Timeout):
            requests.post(pair.jenga.url + "/generate", json=payload, timeout=3)

    thread = threading.Thread(target=long_request)
    thread.start()
    thread.join()
    greedy(pair.jenga, "After the abort.", 4)  # the server still serves
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))


def test_flush_after_load_leaves_every_page_free(pair: Pair, loaded: list[list[dict]]) -> None:
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))
