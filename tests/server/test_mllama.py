"""Tiny mllama (cross-attention vision model) on CPU, default manager vs `--memory-manager jenga`.

Under jenga the image tokens' KV lives only in the cross-attention layers' pages and the text
tokens' only in the self-attention layers' pages, both carved from the one buffer. Greedy outputs
must match the default manager's for text and image requests, a repeated image must hit the cache
(its encoder pages are keyed by the image), and `/flush_cache` must leave every page free.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from programs import run_image_program  # type: ignore[import-not-found]
from serverkit import Pair, assert_all_free, flush, greedy, jenga_stats, on_all, started_pair

from sglang_jenga.server import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(zoo) -> Iterator[Pair]:  # noqa: ANN001
    with started_pair(zoo("mllama")) as p:
        yield p


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("images")
    paths = []
    for name, size, colour in (("red", (80, 60), (200, 30, 30)), ("green", (64, 96), (20, 200, 30))):
        path = root / f"{name}.png"
        Image.new("RGB", size, colour).save(path)
        paths.append(path)
    return paths


def _image_request(server: Server, image: Path, text: str) -> dict:
    params = {"max_new_tokens": 12, "temperature": 0.0, "ignore_eos": True}
    out = server.post("/generate", {"text": "<|image|>" + text, "image_data": str(image),
                                    "sampling_params": params, "return_logprob": True})
    return {"ids": out["output_ids"], "logprobs": [lp for lp, _t, _ in out["meta_info"]["output_token_logprobs"]],
            "cached_tokens": out["meta_info"]["cached_tokens"]}


def _assert_same(a: dict, b: dict) -> None:
    assert a["ids"] == b["ids"]
    assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-5)
    assert a["cached_tokens"] == b["cached_tokens"]


def test_text_request_matches_default(pair: Pair) -> None:
    _assert_same(*on_all(pair, lambda s: greedy(s, "Hello there, how is the weather?", 16)))


def test_image_requests_match_default_and_hit_the_cache(pair: Pair, images: list[Path]) -> None:
    red, green = images
    first = on_all(pair, lambda s: _image_request(s, red, "What colour is this?"))
    _assert_same(*first)
    again = on_all(pair, lambda s: _image_request(s, red, "What colour is this?"))
    _assert_same(*again)
    assert again[1]["cached_tokens"] > 68  # the image's 68 encoder tokens and the text hit
    other = on_all(pair, lambda s: _image_request(s, green, "What colour is this?"))
    _assert_same(*other)
    follow_up = on_all(pair, lambda s: _image_request(s, red, "Describe the shape."))
    _assert_same(*follow_up)
    assert follow_up[1]["cached_tokens"] >= 68  # same image, new question: the encoder pages hit
    cross = jenga_stats(pair.jenga)["types"]["cross"]
    assert cross["pages_cached"] >= 2 * 68 and cross["pages_used"] == cross["pages_cached"]


def test_chat_with_image_url_matches_default(pair: Pair, images: list[Path]) -> None:
    content = [{"type": "image_url", "image_url": {"url": images[1].as_uri()}},
               {"type": "text", "text": "What is in the picture?"}]
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8,
            "temperature": 0}
    default, jenga = on_all(pair, lambda s: s.post("/v1/chat/completions", body))
    assert jenga["choices"][0]["message"] == default["choices"][0]["message"]
    assert jenga["usage"]["prompt_tokens"] > 68


def test_frontend_image_program_matches_default(pair: Pair, images: list[Path]) -> None:
    default, jenga = on_all(pair, lambda s: run_image_program(s.url, images[0]))
    assert jenga == default


def test_flush_leaves_every_page_free(pair: Pair) -> None:
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))
