"""Helpers for tests that start real sglang servers on the tiny zoo models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sglang_jenga.server import Server

# Every tiny server: random weights, a small KV budget, a fixed seed.
TINY_ARGS = ("--load-format", "dummy", "--random-seed", "0", "--log-level", "info")


# Dummy weights wide enough that outputs depend on the KV cache (see sglang_jenga.plugin).
TINY_ENV = {"SGLANG_JENGA_DUMMY_WEIGHT_RANGE": "0.2"}


def start(model_path: Path, *args: str, max_total_tokens: int = 4096) -> Server:
    """A started server (the caller stops it) with the tiny-model flags."""
    server = Server(model_path, *TINY_ARGS, "--max-total-tokens", str(max_total_tokens), *args, env=TINY_ENV)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


def greedy(server: Server, prompt: str | list[int], max_new_tokens: int = 16) -> dict[str, Any]:
    """Greedy /generate with logprobs; returns {"ids", "logprobs", "cached_tokens", "text"}."""
    key = "text" if isinstance(prompt, str) else "input_ids"
    params = {"max_new_tokens": max_new_tokens, "temperature": 0.0}
    out = server.post("/generate", {key: prompt, "sampling_params": params, "return_logprob": True})
    meta = out["meta_info"]
    return {
        "ids": out["output_ids"],
        "logprobs": [lp for lp, _tok, _ in meta["output_token_logprobs"]],
        "cached_tokens": meta["cached_tokens"],
        "text": out["text"],
    }
