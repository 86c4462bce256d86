"""The scheduler's CPU time outside the forward, jenga vs sglang's default manager, in real servers on CPU.

    SGLANG_USE_CPU_ENGINE=1 python -m sglang_jenga.bench.scheduler_cost [--models gemma3 llama]
        [--requests 32] [--new-tokens 48] [--budget-tokens 16384] [--rounds 2] [--page-size 1] [--json OUT]

For each tiny zoo model, a default server and a jenga server (one CPU core each, SGLANG_JENGA_TIME_SCHEDULER=1,
see adapter/timing.py) get the same bursts of concurrent greedy requests (a shared document prefix, distinct
questions, `--new-tokens` each). The budget is large enough that both managers admit the same batches, so the
scheduler does the same work apart from the memory manager. Per manager, from the scheduler thread's CPU time
between the first burst's end (warm-up) and the last's:

  decode step     `get_next_batch_to_run` that prepared a decode batch + `process_batch_result` of it
  prefill batch   the same for prefill batches, plus the admission passes that found no batch (amortised)
  memory calls    match / alloc_extend / alloc_decode / checkpoint / release / release_window, µs per call

and jenga / default ratios. The forward (`run_batch`) is not in these figures.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sglang_jenga.adapter.timing import TIMING_ENV
from sglang_jenga.bench.serving import run_models
from sglang_jenga.models import build
from sglang_jenga.server import Server, pinned_env, start_all, stop_all

SERVER_FLAGS = ("--load-format", "dummy", "--dtype", "float32", "--random-seed", "0")
ENV = {"SGLANG_JENGA_DUMMY_WEIGHT_RANGE": "0.5", TIMING_ENV: "1"}
DOCUMENT = ("The harbour master counted the boats, the nets and the gulls at dawn and again at dusk, and wrote "
            "each number into the ledger that hung beside the door. ") * 6
MANAGERS = ("default", "jenga")


def start_pair(model_dir: Path, budget_tokens: int, page_size: int = 1) -> dict[str, Server]:
    flags = [*SERVER_FLAGS, "--max-total-tokens", str(budget_tokens), "--page-size", str(page_size)]
    servers = [Server(model_dir, *flags, "--memory-manager", m, env={**ENV, **pinned_env(core)})
               for core, m in enumerate(MANAGERS)]
    return dict(zip(MANAGERS, start_all(servers), strict=True))


def burst(server: Server, round_: int, requests: int, new_tokens: int) -> list[list[int]]:
    """`requests` concurrent greedy requests; their output ids in order."""
    params = {"max_new_tokens": new_tokens, "temperature": 0.0, "ignore_eos": True}

    def one(k: int) -> list[int]:
        text = f"{DOCUMENT} Question {round_}.{k}: how many boats were counted on day {k}?"
        return list(server.post("/generate", {"text": text, "sampling_params": params})["output_ids"])

    with ThreadPoolExecutor(requests) as pool:
        return list(pool.map(one, range(requests)))


def timings(server: Server) -> dict[str, list[int]]:
    return dict(server.get("/server_info")["internal_states"][0]["scheduler_timing"])


def per_batch(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, float]:
    """µs per decode step, per prefill batch and per memory-manager call, from two timing snapshots."""
    def diff(key: str) -> tuple[int, int]:
        a, b = before.get(key, [0, 0]), after.get(key, [0, 0])
        return b[0] - a[0], b[1] - a[1]

    decode_steps, decode_ns = diff("next_batch/decode")
    prefills, prefill_ns = diff("next_batch/prefill")
    idle_ns = diff("next_batch/idle")[1]
    out = {"decode_steps": float(decode_steps), "prefill_batches": float(prefills),
           "decode_step_us": (decode_ns + diff("process_result/decode")[1]) / max(1, decode_steps) / 1e3,
           "prefill_batch_us": (prefill_ns + idle_ns + diff("process_result/prefill")[1]) / max(1, prefills) / 1e3}
    for name in ("match", "alloc_extend", "alloc_decode", "checkpoint", "release", "release_window"):
        calls, ns = diff(name)
        out[f"{name}_us"] = ns / calls / 1e3 if calls else 0.0
    return out


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    servers = start_pair(build(name, Path(args.zoo) / name), args.budget_tokens, args.page_size)
    try:
        def run(s: Server) -> tuple[dict[str, float], list[list[list[int]]]]:
            outputs = [burst(s, 0, args.requests, args.new_tokens)]  # warm-up
            before = timings(s)
            outputs += [burst(s, r, args.requests, args.new_tokens) for r in range(1, args.rounds + 1)]
            return per_batch(before, timings(s)), outputs

        with ThreadPoolExecutor(2) as pool:
            results = dict(zip(MANAGERS, pool.map(run, servers.values()), strict=True))
    finally:
        stop_all(list(servers.values()))
    same = results["default"][1] == results["jenga"][1]
    return {"same_outputs": same, **{m: r[0] for m, r in results.items()}}


def print_table(all_results: dict[str, dict[str, Any]]) -> None:
    cols = ("decode_step_us", "prefill_batch_us", "match_us", "alloc_extend_us", "alloc_decode_us",
            "checkpoint_us", "release_us", "release_window_us")
    print(f"{'model':8} {'manager':8} {'steps':>6} {'prefills':>8} " + " ".join(f"{c[:-3]:>14}" for c in cols))
    for model, res in all_results.items():
        for m in MANAGERS:
            r = res[m]
            print(f"{model:8} {m:8} {r['decode_steps']:>6.0f} {r['prefill_batches']:>8.0f} "
                  + " ".join(f"{r[c]:>14.1f}" for c in cols))
        d, j = res["default"], res["jenga"]
        ratios = " ".join(f"{j[c] / d[c]:>13.2f}x" if d[c] else f"{'-':>14}" for c in cols)
        print(f"{model:8} {'ratio':8} {'':>6} {'':>8} {ratios}   (outputs identical: {res['same_outputs']})")
    print("µs of scheduler-thread CPU time; decode step / prefill batch: the scheduler's work around one forward.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["gemma3", "llama"])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--budget-tokens", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=2, help="timed bursts after the warm-up one")
    parser.add_argument("--page-size", type=int, default=1, help="sglang's --page-size, both servers")
    run_models(parser, bench_model, print_table)


if __name__ == "__main__":
    main()
