"""End to end on CPU: `python -m sglang.bench_serving` against real servers, jenga vs sglang's default.

    SGLANG_USE_CPU_ENGINE=1 python -m sglang_jenga.bench.serving [--models gemma3 mellum]
        [--budget-tokens 1200] [--num-prompts 48] [--input-len 160] [--output-len 96] [--json OUT]
        [--mamba-slots 12]

For each tiny zoo model, a default server and a jenga server with the same KV byte budget
(`--max-total-tokens`, which under jenga means the bytes the default layout would use) are started
side by side, one CPU core each. sglang's own client sends the same burst of random token ids
(`--dataset-name random-ids`, no download; `--request-rate inf`, fixed seed) to each. Printed per
model and manager: request throughput, mean and peak running requests (from the scheduler's
per-step decode log) and retractions (from its log), and the jenga / default ratios.

Mamba hybrids (falcon_h1, nemotron_h, qwen3_next) also get `--max-mamba-cache-size` (the default
manager's state slots, which cap its running requests at slots / 3; jenga gets the same bytes in
its shared buffer) and `--mamba-radix-cache-strategy no_buffer --disable-overlap-schedule`, the
strategy that runs on CPU.

`--enable-unified-memory` (sglang's one-buffer SWA/Mamba pool) is not in this comparison: it
refuses the torch_native attention backend, the only one that runs on CPU (it needs
fa3/fa4/flashinfer/triton/trtllm).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sglang_jenga.models import build
from sglang_jenga.server import Server, pinned_env, start_all, stop_all

SERVER_FLAGS = ("--load-format", "dummy", "--dtype", "float32", "--random-seed", "0", "--decode-log-interval", "1")
ENV = {"SGLANG_JENGA_DUMMY_WEIGHT_RANGE": "0.5"}
MAMBA_MODELS = ("falcon_h1", "nemotron_h", "qwen3_next")
MAMBA_FLAGS = ("--mamba-radix-cache-strategy", "no_buffer", "--disable-overlap-schedule")


def start_pair(name: str, model_dir: Path, args: argparse.Namespace) -> dict[str, Server]:
    managers = ("default", "jenga")
    flags, env = [*SERVER_FLAGS, "--max-total-tokens", str(args.budget_tokens)], dict(ENV)
    if name in MAMBA_MODELS:
        flags += [*MAMBA_FLAGS, "--max-mamba-cache-size", str(args.mamba_slots)]
        env["OMP_NUM_THREADS"] = "1"  # the scheduler's OpenMP threads otherwise spin on a 2-core machine
    servers = [Server(model_dir, *flags, "--memory-manager", m, env={**env, **pinned_env(core)})
               for core, m in enumerate(managers)]
    return dict(zip(managers, start_all(servers), strict=True))


def run_client(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """sglang's bench_serving against `server`; returns its JSON result line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.jsonl"
        cmd = [sys.executable, "-m", "sglang.bench_serving", "--backend", "sglang", "--base-url", server.url,
               "--model", server.model_path, "--tokenizer", server.model_path, "--dataset-name", "random-ids",
               "--num-prompts", str(args.num_prompts), "--random-input-len", str(args.input_len),
               "--random-output-len", str(args.output_len), "--random-range-ratio", "0.5",
               "--request-rate", "inf", "--seed", "1", "--disable-tqdm", "--output-file", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                              env={**os.environ, "SGLANG_USE_CPU_ENGINE": "1"})
        if done.returncode != 0:
            tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            raise RuntimeError(f"bench_serving failed ({done.returncode}):\n{tail}")
        return dict(json.loads(out.read_text().strip().splitlines()[-1]))


def log_stats(log: str) -> dict[str, float]:
    """Running requests per decode step (mean over busy steps, peak) and retracted requests."""
    running = [int(n) for n in re.findall(r"Decode batch, #running-req: (\d+)", log)]
    busy = [n for n in running if n > 0]
    retracted = sum(int(n) for n in re.findall(r"#retracted_reqs: (\d+)", log))
    return {"mean_running": statistics.fmean(busy) if busy else 0.0, "max_running": max(running, default=0),
            "retractions": retracted}


def bench_model(name: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    model_dir = build(name, Path(args.zoo) / name)
    servers = start_pair(name, model_dir, args)
    try:
        results = {}
        for manager, server in servers.items():
            client = run_client(server, args)
            results[manager] = {"request_throughput": client["request_throughput"],
                                "output_throughput": client["output_throughput"], **log_stats(server.log())}
        return results
    finally:
        stop_all(list(servers.values()))


def print_table(all_results: dict[str, dict[str, dict[str, float]]]) -> None:
    cols = ("request_throughput", "mean_running", "max_running", "retractions")
    print(f"{'model':10} {'manager':8} " + " ".join(f"{c:>18}" for c in cols))
    for model, results in all_results.items():
        for manager, r in results.items():
            print(f"{model:10} {manager:8} " + " ".join(f"{r[c]:>18.2f}" for c in cols))
        d, j = results["default"], results["jenga"]
        ratios = " ".join(f"{j[c] / d[c]:>17.2f}x" if d[c] else f"{'-':>18}" for c in cols)
        print(f"{model:10} {'ratio':8} {ratios}")


def run_models(parser: argparse.ArgumentParser, bench_model: Callable[[str, argparse.Namespace], Any],
               print_table: Callable[[dict[str, Any]], None]) -> None:
    """The CLI of a per-model server benchmark: `--zoo` and `--json` added to `parser`, `bench_model(name, args)`
    for every model of `--models`, the table printed, the results written as JSON."""
    parser.add_argument("--zoo", default="out/zoo")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {name: bench_model(name, args) for name in args.models}
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["gemma3", "mellum"])
    parser.add_argument("--budget-tokens", type=int, default=1200)
    parser.add_argument("--num-prompts", type=int, default=48)
    parser.add_argument("--input-len", type=int, default=160)
    parser.add_argument("--output-len", type=int, default=96)
    parser.add_argument("--mamba-slots", type=int, default=12, help="--max-mamba-cache-size for Mamba hybrids")
    run_models(parser, bench_model, print_table)


if __name__ == "__main__":
    main()
