"""sglang's Triton attention backend on this CPU machine (cpu_runtime/triton_route.py): tiny gemma3 with
`--attention-backend triton`, under the default manager and under `--memory-manager jenga`, beside a
default-manager server on torch_native (the backend every other server test compares on).

Greedy outputs and log-probabilities of jenga on Triton must equal the default manager's on Triton, and
both must equal torch_native's: a prompt longer than the 32-token sliding window, a decode past it (sglang's
Triton decode attends to one key too few there unless the route's fix is in: log-probabilities then differ
by ~0.4, measured 2026-12-03), a prefix hit and a concurrent batch. After `/flush_cache` every jenga page is
free. `--triton-attention-num-kv-splits 1`: the same outputs as sglang's default split count, ~3x faster
under the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from serverkit import JENGA, assert_all_free, flush, greedy, greedy_many, jenga_stats, on_all, server

from sglang_jenga.server import Server, start_all, stop_all

pytestmark = pytest.mark.slow

TRITON = ("--attention-backend", "triton", "--triton-attention-num-kv-splits", "1")
STORY = "Once the ferry stopped running, the islanders built a narrow causeway of stones and timber. "
# 40 new tokens (past the window), then a prompt that extends the first: a prefix hit, 16 new tokens
RUNS = [(STORY * 4, 40), (STORY * 4 + "What did they build?", 16)]


class Trio(NamedTuple):
    reference: Server  # default manager, torch_native
    default: Server  # default manager, triton
    jenga: Server  # jenga, triton


@pytest.fixture(scope="module")
def trio(zoo) -> Iterator[Trio]:  # noqa: ANN001
    model = zoo("gemma3")
    servers = Trio(server(model, core=0), server(model, *TRITON, core=0), server(model, *TRITON, *JENGA, core=1))
    start_all(list(servers))
    try:
        yield servers
    finally:
        stop_all(list(servers))


def _assert_same(a: dict, b: dict, abs_tol: float) -> None:
    assert a["ids"] == b["ids"]
    assert a["logprobs"] == pytest.approx(b["logprobs"], abs=abs_tol)


def test_triton_backend_is_what_runs(trio: Trio) -> None:
    for s, backend in zip(trio, ("torch_native", "triton", "triton"), strict=True):
        assert s.get("/server_info")["attention_backend"] == backend


def test_outputs_match_default_and_torch_native(trio: Trio) -> None:
    for prompt, new_tokens in RUNS:
        reference, default, jenga = on_all(trio, lambda s, p=prompt, n=new_tokens: greedy(s, p, n))
        _assert_same(default, jenga, 1e-5)
        _assert_same(reference, jenga, 1e-4)
    assert jenga["cached_tokens"] > 0 and default["cached_tokens"] > 0


def test_concurrent_batch_matches_default(trio: Trio) -> None:
    prompts = [STORY * k + f" Chapter {k}." for k in range(1, 4)]
    reference, default, jenga = on_all(trio, lambda s: greedy_many(s, prompts, 16))
    for r, d, j in zip(reference, default, jenga, strict=True):
        _assert_same(d, j, 1e-5)
        _assert_same(r, j, 1e-4)


def test_flush_leaves_every_page_free(trio: Trio) -> None:
    greedy(trio.jenga, STORY * 3, 8)
    busy = jenga_stats(trio.jenga)
    assert busy["types"]["swa"]["pages_cached"] > 0 and busy["types"]["full"]["pages_cached"] > 0
    flush(trio.jenga)
    assert_all_free(jenga_stats(trio.jenga))
