"""Real sglang servers on the tiny Mamba2 hybrids (FalconH1, NemotronH) and Qwen3-Next, CPU only.

They serve through the plain-torch kernels of sglang_jenga.cpu_runtime.mamba, which sglang_jenga's
plugin installs by calling `register_cpu_mamba_hooks()`. Each model's server starts once for this
module and is stopped when its tests are done, also when they fail.

Mamba radix cache on CPU: only `--mamba-radix-cache-strategy no_buffer` starts (sglang refuses
extra_buffer without platform support for state snapshots). no_buffer keeps a request's Mamba
state only where the request ended (prompt + output - 1 tokens), so an identical second prompt
recomputes, and a prompt that extends a finished request's prompt + output reuses its state.

The scheduler runs with OMP_NUM_THREADS=1: on the 2-core test machine its OpenMP threads otherwise
spin against the other processes and a 40-token request takes seconds instead of ~0.2 s.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serverkit import greedy, start  # type: ignore[import-not-found]

from sglang_jenga.server import Server

pytestmark = pytest.mark.slow

MAMBA_ARGS = ("--max-mamba-cache-size", "8", "--mamba-radix-cache-strategy", "no_buffer", "--disable-overlap-schedule")
PROMPT = list(range(5, 45))


@pytest.fixture(scope="module", params=["falcon_h1", "nemotron_h", "qwen3_next"])
def mamba_server(request: pytest.FixtureRequest, zoo: Callable[[str], Path]) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        server = start(zoo(request.param), *MAMBA_ARGS)
    try:
        yield server
    finally:
        server.stop()


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


def test_generate_is_greedy_and_repeatable(mamba_server: Server) -> None:
    first = greedy(mamba_server, PROMPT, 8)
    again = greedy(mamba_server, PROMPT, 8)
    assert len(first["ids"]) > 0
    assert first["ids"] == again["ids"]


def test_extending_a_finished_request_reuses_its_mamba_state(mamba_server: Server) -> None:
    """The follow-up starts from the cached state; after a cache flush it is recomputed from
    scratch, and both give the same tokens (prefill scan, decode update and cached state agree)."""
    first = greedy(mamba_server, PROMPT, 8)
    follow_up = PROMPT + first["ids"] + [7, 8, 9]
    cached = greedy(mamba_server, follow_up, 8)
    assert cached["cached_tokens"] >= len(PROMPT)
    mamba_server.post("/flush_cache")
    fresh = greedy(mamba_server, follow_up, 8)
    assert fresh["cached_tokens"] == 0
    assert fresh["ids"] == cached["ids"]


def test_batched_requests_match_one_by_one(mamba_server: Server) -> None:
    """Sequences of different lengths prefilled and decoded together (varlen conv and scan)."""
    prompts = [list(range(10, 30)), list(range(50, 53)), list(range(200, 260))]
    alone = [greedy(mamba_server, p, 6)["ids"] for p in prompts]
    mamba_server.post("/flush_cache")
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(lambda p: greedy(mamba_server, p, 6)["ids"], prompts))
    assert together == alone


def test_openai_chat_completion(mamba_server: Server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 8, "temperature": 0}
    out = mamba_server.post("/v1/chat/completions", body)
    assert out["choices"][0]["finish_reason"] in ("length", "stop")
    assert 0 < out["usage"]["completion_tokens"] <= 8
    assert out["usage"]["prompt_tokens"] > 3
