"""Microbenchmark: Jenga core vs sglang 0.5.23's allocator and radix cache, same operations, same run.

Model: a full-attention + sliding-window hybrid (window 1024 tokens), one token per page (P=1), as sglang's
SWATokenToKVPoolAllocator + UnifiedRadixCache(FULL, SWA) serve it; the Jenga side uses Gemma-3-27B's real
layout (a large page = 26 full or 5 sliding-window pages). Both pools hold 262,144 tokens per type.

  alloc_prefill   16 requests x 512 tokens, both types (sglang: one alloc(8192); Jenga: per-request
                  request-aware allocs, 2 types)
  free_prefill    free those 8,192 tokens
  alloc_decode    one token for each of 256 running requests that hold 37 prompt tokens each (sglang:
                  alloc(256); Jenga: alloc_each x 2 types); freed again after each timing, so every request
                  still has a free slot in its open large page
  decode_16_steps 16 such steps in a row (not freed in between): every request fills its open large pages
                  and opens new ones (sliding window every 5 tokens, full attention every 26) at the rate a
                  real decode does
  release_window  each of 256 requests frees one sliding-window page that left its window (sglang: free_swa)
  match           a 4,100-token prompt against a tree of 32 cached 4,096-token sequences (shared 512-token
                  prefix; ~115k pages per type), hitting 4,096 tokens, and the pages of the hit (sglang:
                  match_prefix + path_device_indices, what the scheduler needs for req_to_token)
  insert          a new 4,096-token sequence sharing the 512-token prefix (3,584 new pages per type); the
                  match and allocation before it are not timed
  evict           evict the least recently used 3,584-token leaf (both types)

Owner ids: the running requests are 0..255, the prefills 256..271, the tree's sequences 2^20 + i (each request
its own id, as in an engine). Each op is timed `--reps` times per round, 3 rounds (setup outside the timer),
Jenga and sglang interleaved; the median is reported in microseconds. Both sides run single-threaded on the CPU
(torch.set_num_threads(1)): here sglang's allocator does its bookkeeping with CPU tensor ops, where a GPU run
would launch kernels. sglang's tree core is its default (a Rust core in 0.5.23); `--sglang-tree-core python`
selects its Python core. Prints a table and, with `--json OUT`, writes
{"ops": {NAME: {"jenga_us", "sglang_us", "ratio"}}, "workload": {...}}. Runs in ~15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

from sglang_jenga.core import MODELS, TwoLevelAllocator, TypedRadixTree, plan_layout

WINDOW = 1024
POOL_TOKENS = 1 << 18
BATCH = 256
DECODE_STEPS = 16
PREFILL_REQS, PREFILL_TOKENS = 16, 512
SEQ, SHARED, TREE_SEQS = 4096, 512, 32
# Owner ids: running requests 0..BATCH-1, prefills after them, tree sequences from SEQ_OWNER: a request's id
# is its own (reusing a running request's id would close that request's open large pages).
SEQ_OWNER = 1 << 20


def _seq(i: int) -> list[int]:
    """Sequence i: the shared 512-token prefix, then tokens no other sequence has."""
    return list(range(SHARED)) + list(range(10**6 * (i + 1), 10**6 * (i + 1) + SEQ - SHARED))


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


class JengaSide:
    """The Jenga core with Gemma-3-27B's layout at P=1."""

    def __init__(self) -> None:
        self.layout = plan_layout(MODELS["gemma-3-27b"], 1)
        per_large = {t.name: t.pages_per_large for t in self.layout.types}
        num_large = sum(-(-POOL_TOKENS // k) for k in per_large.values())
        self.alloc = TwoLevelAllocator(self.layout, num_large)
        self.tree = TypedRadixTree(self.alloc)
        self.full, self.swa = self.alloc.of("full"), self.alloc.of("swa")
        self.owners = list(range(BATCH))
        self.running = [(self.full.alloc(37, o), self.swa.alloc(37, o)) for o in self.owners]
        self.leaf_bytes = (SEQ - SHARED) * sum(t.page_bytes for t in self.layout.types)

    def alloc_prefill(self) -> list[tuple[list[int], list[int]]]:
        return [(self.full.alloc(PREFILL_TOKENS, o), self.swa.alloc(PREFILL_TOKENS, o))
                for o in range(BATCH, BATCH + PREFILL_REQS)]

    def free_prefill(self, pages: list[tuple[list[int], list[int]]]) -> None:
        for f, s in pages:
            self.full.free(f)
            self.swa.free(s)

    def alloc_decode(self) -> tuple[list[int], list[int]]:
        return self.full.alloc_each(self.owners), self.swa.alloc_each(self.owners)

    def free_decode(self, pages: tuple[list[int], list[int]]) -> None:
        self.full.free(pages[0])
        self.swa.free(pages[1])

    def release_window(self, pages: tuple[list[int], list[int]]) -> None:
        self.swa.free(pages[1])

    def prepare_insert(self, i: int) -> tuple[list[int], dict[str, list[int | None]]]:
        seq = _seq(i)
        hit = self.tree.match(seq).hit_tokens
        n = len(seq) - hit
        owner = SEQ_OWNER + i  # a request of its own, not one of the running ones
        pages = {"full": self.full.alloc(n, owner), "swa": self.swa.alloc(n, owner)}
        self.alloc.close_owner(owner)
        return seq, {name: [None] * hit + p for name, p in pages.items()}

    def insert(self, prepared: tuple[list[int], dict[str, list[int | None]]]) -> None:
        self.tree.insert(*prepared)

    def match(self, i: int) -> int:
        hit = self.tree.match(_seq(i) + [1, 2, 3, 4])
        return len(hit.pages["full"].pages)

    def evict_leaf(self) -> int:
        return self.tree.evict(self.leaf_bytes).bytes_freed


class SglangSide:
    """sglang's SWATokenToKVPoolAllocator and UnifiedRadixCache(FULL, SWA) on CPU, as its own unit tests
    build them (sglang/test/kits/unified_radix_cache/fixtures.py; construction in sgl_build.build_swa)."""

    def __init__(self, tree_core: str | None) -> None:
        import torch
        from sglang.srt.mem_cache.base_prefix_cache import EvictParams, InsertParams, MatchPrefixParams
        from sglang.srt.mem_cache.radix_cache import RadixKey

        from .sgl_build import build_swa

        pools = build_swa(POOL_TOKENS, POOL_TOKENS, WINDOW, BATCH, SEQ + 8, tree_core, head_dim=8)
        self.torch, self.RadixKey = torch, RadixKey
        self.EvictParams, self.InsertParams = EvictParams, InsertParams
        self.MatchPrefixParams = MatchPrefixParams
        self.alloc, self.cache = pools.allocator, pools.cache
        self.tree_core = type(self.cache.tree_core).__name__
        self.running = self.alloc.alloc(BATCH * 37)

    def _key(self, tokens: list[int]) -> Any:
        return self.RadixKey(array("q", tokens))

    def alloc_prefill(self) -> Any:
        return self.alloc.alloc(PREFILL_REQS * PREFILL_TOKENS)

    def free_prefill(self, pages: Any) -> None:
        self.alloc.free(pages)

    def alloc_decode(self) -> Any:
        return self.alloc.alloc(BATCH)

    def free_decode(self, pages: Any) -> None:
        self.alloc.free(pages)

    def release_window(self, pages: Any) -> None:
        self.alloc.free_swa(pages)

    def prepare_insert(self, i: int) -> tuple[list[int], Any]:
        seq = _seq(i)
        hit = self.cache.match_prefix(self.MatchPrefixParams(key=self._key(seq)))
        cached = self.cache.path_device_indices(hit.last_device_node)[:hit.device_prefix_len]
        return seq, self.torch.cat([cached, self.alloc.alloc(len(seq) - hit.device_prefix_len)])

    def insert(self, prepared: tuple[list[int], Any]) -> None:
        seq, value = prepared
        self.cache.insert(self.InsertParams(key=self._key(seq), value=value))

    def match(self, i: int) -> int:
        hit = self.cache.match_prefix(self.MatchPrefixParams(key=self._key(_seq(i) + [1, 2, 3, 4])))
        return len(self.cache.path_device_indices(hit.last_device_node))

    def evict_leaf(self) -> int:
        res = self.cache.evict(self.EvictParams(num_tokens=SEQ - SHARED, swa_num_tokens=SEQ - SHARED))
        return int(res.num_tokens_evicted)


def _time(setup: Callable[[], Any], op: Callable[[Any], Any], undo: Callable[[Any, Any], Any],
               reps: int) -> list[float]:
    """`reps` timings of op(setup()); undo(state, result) restores the state, untimed."""
    out = []
    for _ in range(reps):
        state = setup()
        t = time.perf_counter()
        result = op(state)
        out.append(time.perf_counter() - t)
        undo(state, result)
    return out


def _ops(side: Any, reps: int, counter: list[int]) -> dict[str, list[float]]:
    """Timings of every op on one side. `counter[0]` is the last sequence inserted; the tree holds as many
    sequences after the call as before."""

    def nothing() -> None:
        return None

    def ignore(*_: Any) -> None:
        return None

    def next_seq() -> int:
        counter[0] += 1
        return counter[0]

    def evict_then_refill(*_: Any) -> None:
        side.insert(side.prepare_insert(next_seq()))

    table: list[tuple[str, Callable[[], Any], Callable[[Any], Any], Callable[[Any, Any], Any]]] = [
        ("alloc_prefill", nothing, lambda _: side.alloc_prefill(), lambda _, p: side.free_prefill(p)),
        ("free_prefill", side.alloc_prefill, side.free_prefill, ignore),
        ("alloc_decode", nothing, lambda _: side.alloc_decode(), lambda _, p: side.free_decode(p)),
        ("decode_16_steps", nothing, lambda _: [side.alloc_decode() for _ in range(DECODE_STEPS)],
         lambda _, steps: [side.free_decode(p) for p in steps]),
        ("release_window", side.alloc_decode, side.release_window, lambda p, _: _free_full(side, p)),
        ("match", nothing, lambda _: side.match(counter[0]), ignore),
        ("insert", lambda: side.prepare_insert(next_seq()), side.insert, ignore),
    ]
    res = {name: _time(setup, op, undo, reps) for name, setup, op, undo in table}
    for _ in range(reps):  # back to the tree size we started with
        side.evict_leaf()
    res["evict"] = _time(nothing, lambda _: side.evict_leaf(), evict_then_refill, reps)
    return res


def _free_full(side: Any, pages: Any) -> None:
    """After release_window freed the sliding-window half of a decode step, free the full-attention half."""
    if isinstance(side, JengaSide):
        side.full.free(pages[0])
    else:
        side.alloc.free_full(pages)


def run(reps: int, sglang_tree_core: str | None) -> dict[str, Any]:
    """Build both sides, fill both trees with TREE_SEQS sequences, time every op, return the report."""
    t0 = time.perf_counter()
    jenga, sgl = JengaSide(), SglangSide(sglang_tree_core)
    for side in (jenga, sgl):
        for i in range(TREE_SEQS):
            side.insert(side.prepare_insert(i))
    assert jenga.match(3) == sgl.match(3) == SEQ, (jenga.match(3), sgl.match(3))  # same hit, same pages
    timings: dict[str, dict[str, list[float]]] = {"jenga": {}, "sglang": {}}
    counters = {"jenga": [TREE_SEQS - 1], "sglang": [TREE_SEQS - 1]}
    for _ in range(3):  # interleave the sides so machine noise hits both
        for name, side in (("jenga", jenga), ("sglang", sgl)):
            for op, samples in _ops(side, reps, counters[name]).items():
                timings[name].setdefault(op, []).extend(samples)
    last = counters["jenga"][0]
    assert jenga.match(last) == sgl.match(last) == SEQ
    jenga.alloc.check_integrity()
    jenga.tree.check_integrity()
    ops = {}
    for op in timings["jenga"]:
        j, s = _median_us(timings["jenga"][op]), _median_us(timings["sglang"][op])
        ops[op] = {"jenga_us": round(j, 2), "sglang_us": round(s, 2), "ratio": round(j / s, 3)}
    workload = {"window": WINDOW, "pool_tokens_per_type": POOL_TOKENS, "decode_batch": BATCH,
                "decode_steps": DECODE_STEPS, "prefill": f"{PREFILL_REQS}x{PREFILL_TOKENS}",
                "tree": f"{TREE_SEQS}x{SEQ} (shared {SHARED})",
                "cached_pages_per_type": jenga.tree.stats().cached_pages["full"], "reps": 3 * reps,
                "sglang_tree_core": sgl.tree_core, "torch_threads": 1,
                "seconds": round(time.perf_counter() - t0, 1)}
    return {"ops": ops, "workload": workload}


def _table(report: dict[str, Any]) -> str:
    lines = [f"{'op':<16}{'jenga us':>12}{'sglang us':>12}{'ratio':>8}"]
    for op, r in report["ops"].items():
        lines.append(f"{op:<16}{r['jenga_us']:>12.1f}{r['sglang_us']:>12.1f}{r['ratio']:>8.2f}")
    lines.append(", ".join(f"{k}={v}" for k, v in report["workload"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON here")
    parser.add_argument("--reps", type=int, default=10, help="timings per op per round (3 rounds)")
    parser.add_argument("--sglang-tree-core", choices=["python", "rust"], default=None,
                        help="sglang's UnifiedRadixCache tree core (default: sglang's own default)")
    args = parser.parse_args(argv)
    report = run(args.reps, args.sglang_tree_core)
    print(_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
