"""Real sglang servers on the tiny zoo models, CPU only: the foundation every other test uses.

Each model's server starts once for this module (parametrised module-scoped fixture) and is
stopped when its tests are done, also when they fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from programs import CONVERSATIONS, QUESTIONS, run_text_programs  # type: ignore[import-not-found]
from serverkit import greedy, start  # type: ignore[import-not-found]

from sglang_jenga.server import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["llama", "gemma3", "mellum"])
def text_server(request: pytest.FixtureRequest, zoo) -> Iterator[Server]:  # noqa: ANN001
    server = start(zoo(request.param))
    try:
        yield server
    finally:
        server.stop()


def test_generate_is_greedy_and_repeatable(text_server: Server) -> None:
    first = greedy(text_server, "The stone bridge carries a road", 12)
    again = greedy(text_server, "The stone bridge carries a road", 12)
    assert len(first["ids"]) == 12
    assert first["ids"] == again["ids"]
    assert again["cached_tokens"] > 0  # the second request hits the radix cache


def test_openai_chat_completion(text_server: Server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 8, "temperature": 0}
    out = text_server.post("/v1/chat/completions", body)
    assert out["choices"][0]["finish_reason"] in ("length", "stop")
    assert out["usage"]["completion_tokens"] <= 8
    assert out["usage"]["prompt_tokens"] > 3


def test_frontend_program_with_fork(text_server: Server) -> None:
    outputs = run_text_programs(text_server.url)
    chats = outputs["multi_turn_chat"]
    assert [len(turns) for turns in chats] == [len(c) for c in CONVERSATIONS]
    assert all(isinstance(answer, str) for turns in chats for answer in turns)
    answers = outputs["document_qa"]["answers"]
    assert len(answers) == len(QUESTIONS) and all(isinstance(a, str) for a in answers)
    assert isinstance(outputs["document_qa"]["summary"], str)
