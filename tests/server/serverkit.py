"""Helpers for tests that start real sglang servers on the tiny zoo models."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from sglang_jenga.server import Server, pinned_env, start_all, stop_all

# Every tiny server: random weights, a fixed seed, a decode log line per step (for #running-req), no warm-up
# request (Server.start waits for /health_generate, which runs a generation itself), and a scheduler that sleeps
# when idle: otherwise it polls at 100% of a core, and the 12-request workload of test_memory_pressure.py took
# ~150 s on one server of a pair instead of ~3 s alone.
DUMMY_ARGS = ("--load-format", "dummy")
TINY_ARGS = (*DUMMY_ARGS, "--dtype", "float32", "--random-seed", "0", "--log-level", "info",
             "--decode-log-interval", "1", "--skip-server-warmup", "--sleep-on-idle")

# Dummy weights wide enough that outputs depend on the KV cache (see sglang_jenga.plugin).
TINY_ENV = {"SGLANG_JENGA_DUMMY_WEIGHT_RANGE": "0.5"}

JENGA = ("--memory-manager", "jenga")


def server(model_path: Path, *args: str, max_total_tokens: int = 4096, core: int | None = None,
           env: dict[str, str] | None = None) -> Server:
    """An unstarted server with the tiny-model flags (`env` added to its environment); `core` pins its model
    threads to one CPU core. A model directory with weights (zoo("gemma3-recall")) loads them: no dummy flags."""
    trained = (model_path / "model.safetensors").exists()
    base = TINY_ARGS[len(DUMMY_ARGS):] if trained else TINY_ARGS
    env = {**({} if trained else TINY_ENV), **(pinned_env(core) if core is not None else {}), **(env or {})}
    return Server(model_path, *base, "--max-total-tokens", str(max_total_tokens), *args, env=env)


def start(model_path: Path, *args: str, max_total_tokens: int = 4096) -> Server:
    """A started server (the caller stops it)."""
    s = server(model_path, *args, max_total_tokens=max_total_tokens)
    try:
        return s.start()
    except BaseException:
        s.stop()
        raise


class Pair(NamedTuple):
    default: Server
    jenga: Server


@contextmanager
def started_pair(model_path: Path, *args: str, max_total_tokens: int = 4096,
                 env: dict[str, str] | None = None) -> Iterator[Pair]:
    """The default manager and jenga on the same model and flags, started side by side (each on its own
    CPU core unless `env` binds them otherwise); both are stopped on exit, also when starting one of them
    failed."""
    pair = Pair(server(model_path, *args, max_total_tokens=max_total_tokens, core=0, env=env),
                server(model_path, *args, *JENGA, max_total_tokens=max_total_tokens, core=1, env=env))
    start_all(list(pair))
    try:
        yield pair
    finally:
        stop_all(list(pair))


def greedy(server: Server, prompt: str | list[int], max_new_tokens: int = 16) -> dict[str, Any]:
    """Greedy /generate with logprobs; returns {"ids", "logprobs", "cached_tokens", "prompt_tokens", "retractions",
    "text", "verify_steps"} (verify_steps: speculative decoding's verify passes for this request, None without)."""
    key = "text" if isinstance(prompt, str) else "input_ids"
    params = {"max_new_tokens": max_new_tokens, "temperature": 0.0, "ignore_eos": True}
    out = server.post("/generate", {key: prompt, "sampling_params": params, "return_logprob": True})
    meta = out["meta_info"]
    return {
        "ids": out["output_ids"],
        "logprobs": [lp for lp, _tok, _ in meta["output_token_logprobs"]],
        "cached_tokens": meta["cached_tokens"],
        "prompt_tokens": meta["prompt_tokens"],
        "retractions": meta.get("num_retractions", 0),
        "text": out["text"],
        "verify_steps": meta.get("spec_verify_ct"),
    }


def on_all(servers: Sequence[Server], fn: Callable[[Server], Any]) -> list[Any]:
    """`fn(server)` on every server, one after the other (a Pair: the default, then the jenga server); results in
    that order. Not at once: two tiny servers working side by side on 2 cores took ~120 s for that 12-request
    workload, one after the other ~6 s."""
    return [fn(s) for s in servers]


def greedy_many(server: Server, prompts: Sequence[str | list[int]], max_new_tokens: int = 16) -> list[dict[str, Any]]:
    """The prompts sent concurrently (so the scheduler batches them); results in prompt order."""
    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda p: greedy(server, p, max_new_tokens), prompts))


def jenga_stats(server: Server) -> dict[str, Any]:
    return dict(server.get("/server_info")["internal_states"][0]["jenga"])


def assert_all_free(stats: dict[str, Any]) -> None:
    """Every large page back in the common pool and no small page of any type in use."""
    assert stats["large_pages_free"] == stats["large_pages_total"], stats
    for name, t in stats["types"].items():
        assert t["pages_used"] == 0 and t["pages_cached"] == 0, (name, t)


def max_running(log: str) -> int:
    """Largest `#running-req` the scheduler logged (decode batches)."""
    return max((int(n) for n in re.findall(r"#running-req: (\d+)", log)), default=0)


def flush(server: Server) -> None:
    """`POST /flush_cache`, waiting up to 60 s for running requests to drain; raises if it did not flush."""
    server.post("/flush_cache?timeout=60")


# Mamba hybrids on CPU: the radix strategy that runs there. Their schedulers run with OMP_NUM_THREADS=1: on
# the 2-core test machine their OpenMP threads otherwise spin against the other processes.
MAMBA_ARGS = ("--mamba-radix-cache-strategy", "no_buffer", "--disable-overlap-schedule")


@contextmanager
def mamba_pair(zoo: Callable[[str], Path], name: str, *args: str, states: int, tokens: int) -> Iterator[Pair]:
    """`started_pair` on zoo model `name` with `--max-mamba-cache-size states` and `tokens` of KV."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        with started_pair(zoo(name), *MAMBA_ARGS, *args, "--max-mamba-cache-size", str(states),
                          max_total_tokens=tokens) as p:
            env.undo()
            yield p
