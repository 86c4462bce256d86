"""One decode step's slot allocation as the server makes it, jenga vs sglang's default allocator, caches warm and cold.

    python -m sglang_jenga.bench.decode_step [--requests 32] [--reps 100] [--json OUT]

Both sides go through sglang's own `alloc_token_slots(tree_cache, n)`, the call `alloc_for_decode` makes at page
size 1: on jenga's side over the server's adapter (a `JengaBuffer` planned per request as the plugin plans a
decode batch, `build_pools`' allocator, `JengaRadixCache`), on sglang's over its own pools and UnifiedRadixCache
(bench/sgl_build.py). Pools of 16,384 tokens per type (jenga: as many large pages), as bench/scheduler_cost.py's
servers have; `--requests` running requests hold 150 + row % 16 tokens (staggered as in a server, so that at each
step only some of them start a new large page); every timing allocates one token for each and is undone after
(outside the timer). Two model shapes, as the tiny zoo's:

  full  llama: 4 full-attention layers; sglang: TokenToKVPoolAllocator
  swa   gemma3: 5 sliding-window (window 32) + 1 full-attention layers; sglang: SWATokenToKVPoolAllocator (its
        slots of both pools and their pairing, which jenga's allocator also writes). sglang's default server on
        a CPU runs this model with one pool, whose step costs what the `full` row's sglang side does

Warm: the step repeated back to back. Cold: a 64 MiB buffer streamed through the caches before each step, as a
forward on a CPU server does between two scheduler steps. There a step's cost is mostly fetching the code and data
it touches, so the real server's ratios (bench/scheduler_cost.py, alloc_decode) sit near the cold ones, not the
warm ones: fewer and more local reads beat fewer instructions. Median µs per step over 3 interleaved rounds;
ratio jenga / sglang. ~20 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sglang_jenga.bench import sgl_build

PROMPT = 150  # tokens the running request on row r holds: PROMPT + r % STAGGER
STAGGER = 16  # staggered lengths, as in a server: each step, only some requests start a new large page
POOL_TOKENS = 16_384  # per type, as bench/scheduler_cost.py's servers (--max-total-tokens)
WINDOW = 32
FLUSH_BYTES = 64 << 20  # more than this machine's last-level cache (32 MiB)
FAMILIES = ("full", "swa")


def _layers(family: str) -> Any:
    import torch

    from sglang_jenga.adapter.build import LayerGroup, ModelLayers
    from sglang_jenga.core import FullAttentionSpec, SlidingWindowSpec

    full = FullAttentionSpec(kv_heads=1, head_dim=64, dtype_bytes=4)  # the tiny zoo's heads, in float32
    groups: tuple[LayerGroup, ...] = (LayerGroup(full, (0, 1, 2, 3)),)
    if family == "swa":
        window = SlidingWindowSpec(window=WINDOW, kv_heads=1, head_dim=64, dtype_bytes=4)
        groups = (LayerGroup(full, (5,)), LayerGroup(window, (0, 1, 2, 3, 4)))
    stage = range(6 if family == "swa" else 4)
    return ModelLayers(groups, 1, 64, torch.float32, stage, (stage,))


def _held(row: int) -> int:
    return PROMPT + row % STAGGER


class JengaStep:
    """The server's jenga pools for `requests` running requests, each holding a prompt; `step()` is one decode
    step's allocation under the plan the plugin sets for a decode batch (adapter's `_alloc_for_decode`)."""

    def __init__(self, family: str, requests: int) -> None:
        from sglang.srt.mem_cache.cache_init_params import CacheInitParams

        from sglang_jenga.adapter.buffer import JengaBuffer, PlannedAlloc
        from sglang_jenga.adapter.build import build_pools
        from sglang_jenga.adapter.tree_cache import JengaRadixCache
        from sglang_jenga.core import plan_layout

        layers = _layers(family)
        self.jenga = JengaBuffer(plan_layout(layers.model_spec(family), 1), POOL_TOKENS, "cpu",
                                 layers.stage_layers())
        self.allocator = build_pools(self.jenga, layers, "cpu").allocator
        req_pool = sgl_build.build_req_pool(requests + 1, PROMPT + 1024)
        params = CacheInitParams(disable=False, req_to_token_pool=req_pool, token_to_kv_pool_allocator=self.allocator,
                                 page_size=1, sliding_window_size=WINDOW if family == "swa" else None)
        self.cache = JengaRadixCache(params, self.jenga)
        # sglang's requests as the plan reads them: their req_to_token row and allocated length
        self.reqs = [SimpleNamespace(kv=SimpleNamespace(req_pool_idx=row, kv_allocated_len=_held(row)))
                     for row in range(1, requests + 1)]
        self._planned = PlannedAlloc  # imported here (after init_sglang), read by the timed step
        prompts = [PlannedAlloc(r.kv.req_pool_idx, 0, r.kv.kv_allocated_len, 0) for r in self.reqs]
        assert self.jenga.alloc_planned(sum(p.tokens for p in prompts), prompts) is not None

    def step(self) -> Any:
        from sglang.srt.mem_cache.allocation import alloc_token_slots

        reqs, planned = self.reqs, self._planned  # the plugin builds these two plans at every decode step
        self.jenga.plan(lambda: [planned(r.kv.req_pool_idx, 0, 1, r.kv.kv_allocated_len) for r in reqs],
                        lambda: [r.kv.req_pool_idx for r in reqs])
        try:
            slots = alloc_token_slots(self.cache, len(reqs))
        finally:
            self.jenga.plan(None)
        # The step's records are written by the next call that reads them (KVCacheManager.alloc_step): in a
        # server after several steps, together; timed here with each step, as if every step had a reader.
        self.jenga.manager.record_steps()
        return slots

    def undo(self, slots: Any) -> None:
        self.allocator.free(slots)


class SglangStep:
    """sglang's default pools for the same model shape; `step()` is `alloc_token_slots` for the batch."""

    def __init__(self, family: str, requests: int) -> None:
        if family == "full":
            self.pools = sgl_build.build_full(POOL_TOKENS, requests + 1, PROMPT + 1024)
        else:
            self.pools = sgl_build.build_swa(POOL_TOKENS, POOL_TOKENS, WINDOW, requests + 1, PROMPT + 1024)
        self.requests = requests
        self.pools.allocator.alloc(sum(map(_held, range(1, requests + 1))))  # the prompts' slots, held throughout

    def step(self) -> Any:
        from sglang.srt.mem_cache.allocation import alloc_token_slots

        return alloc_token_slots(self.pools.cache, self.requests)

    def undo(self, slots: Any) -> None:
        self.pools.allocator.free(slots)


def _time(side: JengaStep | SglangStep, reps: int, flush: Callable[[], Any] | None, requests: int) -> list[float]:
    samples = []
    for _ in range(reps):
        if flush is not None:
            flush()
        t = time.perf_counter()
        slots = side.step()
        samples.append(time.perf_counter() - t)
        assert slots is not None and len(slots) == requests and len(set(slots.tolist())) == requests
        side.undo(slots)
    return samples


def run(requests: int, reps: int) -> dict[str, Any]:
    sgl_build.init_sglang()
    import torch

    t0 = time.perf_counter()
    big = torch.zeros(FLUSH_BYTES // 4)
    flushes: dict[str, Callable[[], Any] | None] = {"warm": None, "cold": lambda: big.add_(1.0)}
    report: dict[str, Any] = {}
    for family in FAMILIES:
        jenga = JengaStep(family, requests)
        sides: dict[str, JengaStep | SglangStep] = {"jenga": jenga, "sglang": SglangStep(family, requests)}
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(3):  # interleave so machine noise hits both sides
            for mode, flush in flushes.items():
                for name, side in sides.items():
                    samples.setdefault((mode, name), []).extend(_time(side, reps, flush, requests))
        jenga.jenga.manager.check_integrity()
        for mode in flushes:
            j, s = (statistics.median(samples[mode, name]) * 1e6 for name in ("jenga", "sglang"))
            report[f"{family}/{mode}"] = {"jenga_us": round(j, 1), "sglang_us": round(s, 1), "ratio": round(j / s, 2)}
    report["workload"] = {"requests": requests, "prompt_tokens": f"{PROMPT}+row%{STAGGER}", "pool_tokens": POOL_TOKENS,
                          "reps": 3 * reps,
                          "flush_bytes": FLUSH_BYTES, "torch_threads": 1,
                          "seconds": round(time.perf_counter() - t0, 1)}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="running requests (one token each per step)")
    parser.add_argument("--reps", type=int, default=200, help="timings per case per round (3 rounds)")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON here")
    args = parser.parse_args(argv)
    report = run(args.requests, args.reps)
    print(f"{'model/caches':<14}{'jenga us':>10}{'sglang us':>11}{'ratio':>7}")
    for case, r in report.items():
        if case != "workload":
            print(f"{case:<14}{r['jenga_us']:>10.1f}{r['sglang_us']:>11.1f}{r['ratio']:>7.2f}")
    print(", ".join(f"{k}={v}" for k, v in report["workload"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
