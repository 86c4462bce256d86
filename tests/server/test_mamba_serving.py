"""Real sglang servers on the tiny Mamba2 hybrids (FalconH1, NemotronH) and Qwen3-Next (gated delta
net), CPU only: sglang's default manager and `--memory-manager jenga` side by side.

They serve through the plain-torch kernels of sglang_jenga.cpu_runtime.mamba, which the plugin installs
by calling `register_cpu_mamba_hooks()`. Both managers run `--mamba-radix-cache-strategy no_buffer` (the
only strategy that starts on CPU), so states are checkpointed at the same places: a copy where a
request's prefill (or a chunk of it) ends, the request's own state where it finishes. A hit ends at the
last checkpoint at or before the full-attention match, so the same requests hit the same lengths on
both and the outputs match token for token.

Budget: 4096 tokens + 8 states (`--max-mamba-cache-size 8`), 64-token chunks. The small-budget
comparison is in test_mamba_pressure.py. After `/flush_cache` every jenga page is free.

Where a concurrent burst's prompts are split into chunks depends on arrival timing, and a different
split changes the numerics (the scan restarts from a state): it changed a greedy token in about one run
in three. So no burst here can be split: a batch is at most 63 tokens in all under 64-token chunks.

The schedulers run with OMP_NUM_THREADS=1: on the 2-core test machine their OpenMP threads otherwise
spin against the other processes and a 40-token request takes seconds instead of ~0.2 s.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
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
    on_all,
)

from sglang_jenga.server import Server

pytestmark = pytest.mark.slow

PROMPT = list(range(5, 85))  # 80 tokens: prefilled in chunks of 64 and 16
NEW = 8


@pytest.fixture(scope="module", params=["falcon_h1", "nemotron_h", "qwen3_next"])
def pair(request: pytest.FixtureRequest, zoo: Callable[[str], Path]) -> Iterator[Pair]:
    with mamba_pair(zoo, request.param, "--chunked-prefill-size", "64", states=8, tokens=4096) as p:
        yield p


def test_plugin_registers_the_cpu_mamba_hooks() -> None:
    """sglang_jenga.plugin.register() must call register_cpu_mamba_hooks() (checked in a fresh process)."""
    code = """
        import os
        os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
        from sglang.srt.plugins.hook_registry import HookRegistry
        import sglang_jenga.plugin
        from sglang_jenga.cpu_runtime.mamba.hooks import TARGETS
        sglang_jenga.plugin.register()
        print(sorted(t.path for t in TARGETS if t.path not in HookRegistry._hooks))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", "plugin.register() does not register the Mamba CPU hooks"


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
    default, jenga = on_all(pair, _conversation)
    for a, b in zip(default, jenga, strict=True):
        assert a["ids"] == b["ids"]
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)
    hits = [r["cached_tokens"] for r in jenga]
    assert hits == [r["cached_tokens"] for r in default]
    assert hits == [0, len(PROMPT) + NEW - 1, len(PROMPT), 64, 0, 64]


def test_cached_state_gives_what_recomputing_gives(pair: Pair) -> None:
    """A follow-up starts from the finished request's cached state; after a flush it is recomputed from
    scratch: the same tokens (prefill scan, decode update and cached state agree), on both managers."""
    def run(server: Server) -> tuple[dict[str, Any], dict[str, Any]]:
        flush(server)
        first = greedy(server, PROMPT, NEW)
        assert greedy(server, PROMPT, NEW)["ids"] == first["ids"]  # greedy and repeatable
        follow_up = PROMPT + first["ids"] + [7, 8, 9]
        cached = greedy(server, follow_up, NEW)
        flush(server)
        return cached, greedy(server, follow_up, NEW)

    for cached, fresh in on_all(pair, run):
        assert cached["cached_tokens"] >= len(PROMPT) and fresh["cached_tokens"] == 0
        assert fresh["ids"] == cached["ids"]


def test_batched_requests_match_one_by_one_and_the_default_manager(pair: Pair) -> None:
    """Sequences of different lengths prefilled and decoded together (varlen conv and scan); 63 tokens in
    all, so however they are batched none is split into chunks."""
    prompts = [list(range(10, 30)), list(range(50, 53)), list(range(200, 240))]

    def run(server: Server) -> tuple[list[list[int]], list[list[int]]]:
        flush(server)
        alone = [greedy(server, p, NEW)["ids"] for p in prompts]
        flush(server)
        return alone, [r["ids"] for r in greedy_many(server, prompts, NEW)]

    (default_alone, default_together), (jenga_alone, jenga_together) = on_all(pair, run)
    assert default_together == default_alone == jenga_alone == jenga_together


def test_openai_chat_completion(pair: Pair) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 8, "temperature": 0}
    for out in on_all(pair, lambda s: s.post("/v1/chat/completions", body)):
        assert out["choices"][0]["finish_reason"] in ("length", "stop")
        assert 0 < out["usage"]["completion_tokens"] <= 8
        assert out["usage"]["prompt_tokens"] > 3


def test_flush_frees_every_page(pair: Pair) -> None:
    greedy_many(pair.jenga, [PROMPT, PROMPT + [9], list(range(100, 150))], NEW)
    stats = jenga_stats(pair.jenga)
    assert stats["types"]["mamba"]["pages_cached"] > 0
    flush(pair.jenga)
    assert_all_free(jenga_stats(pair.jenga))
