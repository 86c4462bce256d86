"""The recall-trained tiny Gemma-3 (5 sliding-window layers of window 32 : 1 full layer) answers questions about
facts hundreds of tokens back, under the default manager and `--memory-manager jenga`, at a small KV budget.

"What is in the red room?" has one right answer (" The apple."), told in a document of 8 facts among corpus
sentences (~330 tokens; 4 facts, ~170 tokens, in the burst): the asked fact sits 3-10 windows back, where only
the full-attention layer reaches, and the question in the window. So an answer is right only if those tokens' KV
is intact. One pair of servers at a 600-token budget with 128-token prefill chunks runs: a burst of 8 documents
among 8 short prompts, all decoding 80 tokens (eviction and retraction), 4 documents asked 3 questions each in
turn (prefix hits), and the frontend programs. Each must be >= 95% right under both managers, with the same
tokens. A third server (jenga, SCRUB_HITS_ENV: every prefix hit's full-attention KV zeroed as it is matched)
answers the hit questions wrongly: the checks can fail.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from programs import run_text_programs  # type: ignore[import-not-found]
from serverkit import JENGA, Pair, assert_all_free, flush, greedy, greedy_many, jenga_stats, on_all, server

from sglang_jenga.adapter.tree_cache import SCRUB_HITS_ENV
from sglang_jenga.models import MODELS
from sglang_jenga.models.recall import Document, document_prompt, fact, is_right, make_document
from sglang_jenga.models.tokenizer import build_tokenizer
from sglang_jenga.server import Server, start_all, stop_all

pytestmark = pytest.mark.slow

BUDGET_TOKENS = 600
# A low conservativeness admits requests on optimistic decode estimates (as in test_memory_pressure.py).
ARGS = ("--chunked-prefill-size", "128", "--schedule-conservativeness", "0.05")
WINDOW = 32
MIN_ACCURACY = 0.95
NEW_TOKENS = 80  # the burst: after the answer, enough decode for running requests to outgrow the budget
LOG = "Log {}: " + "The lighthouse keeper wrote down the weather, the ships and the birds every single evening. " * 2
TOKENIZER = build_tokenizer(MODELS["gemma3"].family)


@pytest.fixture(scope="module")
def servers(zoo) -> Iterator[tuple[Pair, Server]]:  # noqa: ANN001
    """(default and jenga pair, jenga with its hits scrubbed); the scrubbed one shares the jenga server's core."""
    model = zoo("gemma3-recall")
    group = [server(model, *ARGS, max_total_tokens=BUDGET_TOKENS, core=0),
             server(model, *ARGS, *JENGA, max_total_tokens=BUDGET_TOKENS, core=1),
             server(model, *ARGS, *JENGA, max_total_tokens=BUDGET_TOKENS, core=1, env={SCRUB_HITS_ENV: "1"})]
    start_all(group)
    try:
        yield Pair(group[0], group[1]), group[2]
    finally:
        stop_all(group)


@pytest.fixture(scope="module")
def pair(servers: tuple[Pair, Server]) -> Pair:
    return servers[0]


def _documents(seed: int, n: int, facts: int = 8) -> list[Document]:
    return [make_document(random.Random(seed + i), facts, (1, 2)) for i in range(n)]


def _distance(doc: Document, told: tuple[str, str]) -> int:
    """Tokens from the told fact's first token to the end of the question's prompt."""
    prompt = document_prompt(doc.text, told[1])
    return len(TOKENIZER.encode(prompt).ids) - len(TOKENIZER.encode(prompt[:prompt.index(fact(*told))]).ids)


def _first_line(out: dict[str, Any]) -> str:
    return str(out["text"]).split("\n")[0]


def _accuracy(outs: list[dict[str, Any]], values: list[str]) -> float:
    return sum(is_right(_first_line(o), v) for o, v in zip(outs, values, strict=True)) / len(values)


def _assert_same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x["ids"] == y["ids"]
        assert x["logprobs"] == pytest.approx(y["logprobs"], abs=1e-4)


def _prefix_hit_workload(s: Server) -> tuple[list[dict[str, Any]], list[str]]:
    """4 documents, 3 questions each, one after the other: the 2nd and 3rd hit the cached document."""
    outs, values = [], []
    for doc in _documents(200, 4):
        for value, key in doc.facts[:3]:
            outs.append(greedy(s, document_prompt(doc.text, key), 6))
            values.append(value)
    return outs, values


def test_burst_under_eviction_and_retraction(pair: Pair) -> None:
    """8 documents of 4 facts, each asked about its first fact, among 8 short prompts, all decoding 80 tokens at
    once: at this budget jenga admits more than it can keep decoding and retracts some (recall ones too)."""
    docs = _documents(100, 8, facts=4)
    prompts = [p for i, d in enumerate(docs) for p in (document_prompt(d.text, d.facts[0][1]), LOG.format(i))]
    default, jenga = on_all(pair, lambda s: greedy_many(s, prompts, NEW_TOKENS))
    _assert_same(default, jenga)
    values = [d.facts[0][0] for d in docs]
    accuracy = [_accuracy(outs[0::2], values) for outs in (default, jenga)]
    distance = min(_distance(d, d.facts[0]) for d in docs)
    retracted = [[o["retractions"] for o in outs] for outs in (default, jenga)]
    print(f"\nburst: right default {accuracy[0]:.2f} jenga {accuracy[1]:.2f}; the nearest asked fact {distance} "
          f"tokens back; retractions per request (recall, short, ...) default {retracted[0]} jenga {retracted[1]}")
    assert distance >= 3 * WINDOW
    assert accuracy[1] == accuracy[0] >= MIN_ACCURACY
    assert sum(retracted[1]) > 0, "the budget should force jenga to retract"
    assert jenga_stats(pair.jenga)["types"]["full"]["pages_evicted"] > 0, "jenga should have evicted cached pages"


def test_questions_on_cached_documents(pair: Pair) -> None:
    (default, values), (jenga, _) = on_all(pair, _prefix_hit_workload)
    _assert_same(default, jenga)
    hits = [o["cached_tokens"] for o in jenga]
    assert all(h >= o["prompt_tokens"] - 16 for h, o in zip(hits[1::3], jenga[1::3], strict=True)), hits
    accuracy = [_accuracy(outs, values) for outs in (default, jenga)]
    print(f"\nquestions on cached documents: right default {accuracy[0]:.2f} jenga {accuracy[1]:.2f}; hits {hits}")
    assert accuracy[1] == accuracy[0] >= MIN_ACCURACY


def test_frontend_programs_answer_rightly(pair: Pair) -> None:
    """Multi-turn chat over a system prompt of facts and fork/join over that document (examples/programs.py)."""
    default, jenga = on_all(pair, lambda s: run_text_programs(s.url))
    assert jenga == default
    right = jenga["right"]
    print(f"\nfrontend programs: {sum(right)}/{len(right)} right: {jenga['multi_turn_chat']} {jenga['document_qa']}")
    assert sum(right) / len(right) >= MIN_ACCURACY


def test_scrubbed_hits_answer_wrongly(servers: tuple[Pair, Server]) -> None:
    """The same cached-document questions on a jenga server whose prefix hits lose their full-attention KV."""
    outs, values = _prefix_hit_workload(servers[1])
    first, hit = outs[0::3], [o for i, o in enumerate(outs) if i % 3]
    assert all(o["cached_tokens"] > WINDOW for o in hit)
    right_first = _accuracy(first, values[0::3])
    right_hit = _accuracy(hit, [v for i, v in enumerate(values) if i % 3])
    print(f"\nscrubbed hits: right on first questions {right_first:.2f}, on questions hitting the cache "
          f"{right_hit:.2f}")
    assert right_first >= 0.75 and right_hit <= 0.5


def test_every_page_free_after_flush(pair: Pair) -> None:
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))
