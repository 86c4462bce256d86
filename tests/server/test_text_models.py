"""Tiny llama, gemma3 and mellum served by real sglang servers on CPU, once with sglang's default
memory manager and once with `--memory-manager jenga`, side by side.

Every greedy output under jenga must equal the default manager's token for token, with the same
log-probabilities: prompts longer than the sliding window, decodes that run past it (so sliding-
window pages are released while requests run), prefix-cache hits, chunked prefill (chunks of 64
tokens) and concurrent batches (the sglang frontend programs run in test_recall.py, on the recall-trained
gemma3, where their answers are also checked). After the load, `POST /flush_cache`
must leave every jenga page free. mellum runs at `--page-size 16` (both servers): 16-token pages of both
types, prefix hits in whole pages (llama, gemma3 and mellum at 16, gemma3 at 64, and gemma3 at 16 on the Triton
route matched the default manager as well when run by hand, 2026-12-03).
The server pair of each model starts once for this module and is always stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serverkit import Pair, assert_all_free, flush, greedy, greedy_many, jenga_stats, on_all, started_pair

pytestmark = pytest.mark.slow

CHUNK_ARGS = ("--chunked-prefill-size", "64")
STORY = (
    "Once the ferry stopped running, the islanders built a narrow causeway of stones and timber, and every "
    "spring they repaired the stretch the winter storms had broken. "
)
PROMPTS = [
    "The stone bridge carries a road",
    STORY * 6,  # several hundred tokens: beyond the window and across several prefill chunks
    STORY * 2 + "What did the islanders repair?",
]


@pytest.fixture(scope="module", params=["llama", "gemma3", "mellum@16"])
def pair(request: pytest.FixtureRequest, zoo) -> Iterator[Pair]:  # noqa: ANN001
    """The pair of model "name" or, for "name@P", of that model at --page-size P."""
    name, _, page_size = request.param.partition("@")
    with started_pair(zoo(name), *CHUNK_ARGS, *(("--page-size", page_size) if page_size else ())) as p:
        yield p


def _assert_same(a: dict, b: dict) -> None:
    assert a["ids"] == b["ids"]
    assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-5)


def test_generate_and_prefix_hits_match_default(pair: Pair) -> None:
    """Each prompt twice: 40 new tokens (decoding past the window), then 16 from the cache hit, which must be
    the first run's first 16."""
    for prompt in PROMPTS:
        first = on_all(pair, lambda s, p=prompt: greedy(s, p, 40))
        again = on_all(pair, lambda s, p=prompt: greedy(s, p, 16))
        _assert_same(*first)
        _assert_same(*again)
        _assert_same({k: v[:16] for k, v in first[1].items() if k in ("ids", "logprobs")}, again[1])
        if again[1]["prompt_tokens"] > 16:  # at --page-size 16 a shorter prompt holds no whole page to hit
            assert again[1]["cached_tokens"] > 0 and again[0]["cached_tokens"] > 0


def test_concurrent_batch_matches_default(pair: Pair) -> None:
    prompts = [STORY * k + f" Chapter {k}." for k in range(1, 7)]
    for a, b in zip(*on_all(pair, lambda s: greedy_many(s, prompts, 24)), strict=True):
        _assert_same(a, b)


def test_openai_chat_completion(pair: Pair) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 8, "temperature": 0}
    outs = on_all(pair, lambda s: s.post("/v1/chat/completions", body))
    assert outs[0]["choices"][0]["message"] == outs[1]["choices"][0]["message"]
    assert outs[1]["usage"]["completion_tokens"] <= 8 and outs[1]["usage"]["prompt_tokens"] > 3


@pytest.mark.parametrize("pair", ["mellum@16"], indirect=True)
def test_prefix_hits_are_whole_pages(pair: Pair) -> None:
    """At --page-size 16 a hit covers whole pages, the same under both managers; the jenga server's stats count
    16-token pages of both types."""
    prompt = STORY * 3 + " Which stretch broke?"
    on_all(pair, lambda s: greedy(s, prompt, 8))
    hits = [out["cached_tokens"] for out in on_all(pair, lambda s: greedy(s, prompt, 8))]
    assert hits[0] == hits[1] > 0 and hits[1] % 16 == 0, hits
    types = jenga_stats(pair.jenga)["types"]
    # mellum: 1 full-attention and 3 sliding-window layers of 512 B per token (float32)
    assert types["full"]["small_page_bytes"] == 16 * 512 and types["swa"]["small_page_bytes"] == 16 * 3 * 512


def test_flush_leaves_every_page_free(pair: Pair) -> None:
    greedy(pair.jenga, STORY * 3, 8)
    busy = jenga_stats(pair.jenga)
    assert any(t["pages_cached"] for t in busy["types"].values())
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))
