"""Microbenchmark: Jenga core vs sglang 0.5.23's allocator and radix cache, same operations, same run.

Model: a full-attention + sliding-window hybrid (window 1024 tokens), as sglang's SWATokenToKVPoolAllocator +
UnifiedRadixCache(FULL, SWA) serve it; the Jenga side uses Gemma-3-27B's real layout (at P = 1 a large page =
26 full or 5 sliding-window pages). Both pools hold 262,144 tokens per type. Every op runs at P = 1 and at
P = 16 tokens per page (Jenga: `plan_layout(model, 16)`; sglang: the same classes at page_size 16, whose
halves are PagedTokenToKVPoolAllocators driven through alloc_extend / alloc_decode, as the scheduler does).

  alloc_prefill   16 requests x 512 tokens, both types (sglang: one alloc / alloc_extend for the batch;
                  Jenga: one alloc_many per type, each request's pages placed together)
  free_prefill    free those 8,192 tokens (one free per type)
  alloc_decode    one token for each of 256 running requests (sglang: alloc(256) / alloc_decode; Jenga:
                  alloc_each per type for the requests whose token starts a new page: all of them at P = 1);
                  freed again after each timing. Request i holds 37 + i % 16 tokens, so at P = 16 the
                  requests cross page boundaries at different steps, as in a real batch
  decode_16_steps 16 such steps in a row (not freed in between): requests fill their open pages and open new
                  ones at the rate a real decode does
  release_window  each of 256 requests frees one sliding-window page that left its window (sglang: free_swa
                  of its slots)
  match           a 4,100-token prompt against a tree of 32 cached 4,096-token sequences (shared 512-token
                  prefix; ~115k tokens per type), hitting 4,096 tokens, and the pages of the hit (sglang:
                  match_prefix + path_device_indices, what the scheduler needs for req_to_token)
  insert          a new 4,096-token sequence sharing the 512-token prefix (3,584 new tokens per type); the
                  match and allocation before it are not timed
  evict           evict the least recently used 3,584-token leaf (both types)

Owner ids: the running requests are 0..255, the prefills 256..271, the tree's sequences 4096 + i (each request
its own id, as in an engine; owner ids index an array in the allocator). Each op is timed `--reps` times per
round, 3 rounds (setup outside the timer), Jenga and sglang interleaved; the median is reported in
microseconds. Both sides run single-threaded on the CPU (torch.set_num_threads(1)): here sglang's allocator
does its bookkeeping with CPU tensor ops, where a GPU run would launch kernels. sglang's tree core is its
default (a Rust core in 0.5.23); `--sglang-tree-core python` selects its Python core. Prints one table (both
P) and, with `--json OUT`, writes {"P1": {"ops": {NAME: {"jenga_us", "sglang_us", "ratio"}}, "workload": {...}},
"P16": ...}. Runs in ~1 min on 2 cores.
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

import numpy as np

from sglang_jenga.core import MODELS, TwoLevelAllocator, TypedRadixTree, plan_layout
from sglang_jenga.core.allocator import Pages

WINDOW = 1024
POOL_TOKENS = 1 << 18
BATCH = 256
DECODE_STEPS = 16
PREFILL_REQS, PREFILL_TOKENS = 16, 512
SEQ, SHARED, TREE_SEQS = 4096, 512, 32
# Owner ids: running requests 0..BATCH-1, prefills after them, tree sequences from SEQ_OWNER: a request's id
# is its own (reusing a running request's id would close that request's open large pages).
SEQ_OWNER = 1 << 12
RUNNING = 37 + np.arange(BATCH) % 16  # tokens each running request holds


def _seq(i: int) -> list[int]:
    """Sequence i: the shared 512-token prefix, then tokens no other sequence has."""
    return list(range(SHARED)) + list(range(10**6 * (i + 1), 10**6 * (i + 1) + SEQ - SHARED))


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


class JengaSide:
    """The Jenga core with Gemma-3-27B's layout at P tokens per page. Decode state: each running request's
    token count (`lens`), advanced by alloc_decode and rolled back by free_decode."""

    def __init__(self, P: int) -> None:
        self.P = P
        self.layout = plan_layout(MODELS["gemma-3-27b"], P)
        per_large = {t.name: t.pages_per_large for t in self.layout.types}
        num_large = sum(-(-(POOL_TOKENS // P) // k) for k in per_large.values())
        self.alloc = TwoLevelAllocator(self.layout, num_large)
        self.tree = TypedRadixTree(self.alloc)
        self.full, self.swa = self.alloc.of("full"), self.alloc.of("swa")
        self.owners = np.arange(BATCH)
        self.lens = RUNNING.copy()
        pages = -(-self.lens // P)
        self.running = [a.alloc_many(pages, self.owners) for a in (self.full, self.swa)]
        self.prefill_owners = np.arange(BATCH, BATCH + PREFILL_REQS)
        self.prefill_counts = np.full(PREFILL_REQS, PREFILL_TOKENS // P)
        self.leaf_bytes = (SEQ - SHARED) // P * sum(t.page_bytes for t in self.layout.types)

    def alloc_prefill(self) -> tuple[Pages, Pages]:
        return (self.full.alloc_many(self.prefill_counts, self.prefill_owners),
                self.swa.alloc_many(self.prefill_counts, self.prefill_owners))

    def free_prefill(self, pages: tuple[Pages, Pages]) -> None:
        self.full.free(pages[0])
        self.swa.free(pages[1])

    def alloc_decode(self) -> tuple[Pages, Pages]:
        owners = self.owners if self.P == 1 else self.owners[self.lens % self.P == 0]
        self.lens += 1
        return self.full.alloc_each(owners), self.swa.alloc_each(owners)

    def free_decode(self, pages: tuple[Pages, Pages]) -> None:
        """Undo the latest alloc_decode step."""
        self.lens -= 1
        self.full.free(pages[0])
        self.swa.free(pages[1])

    def window_pages(self) -> tuple[Pages, Pages]:
        """A page of each type for every running request (release_window's setup)."""
        return self.full.alloc_each(self.owners), self.swa.alloc_each(self.owners)

    def release_window(self, pages: tuple[Pages, Pages]) -> None:
        self.swa.free(pages[1])

    def free_full(self, pages: tuple[Pages, Pages]) -> None:
        self.full.free(pages[0])

    def prepare_insert(self, i: int) -> tuple[list[int], dict[str, list[int | None]]]:
        seq = _seq(i)
        hit = self.tree.match(seq).hit_tokens // self.P
        n = len(seq) // self.P - hit
        owner = SEQ_OWNER + i  # a request of its own, not one of the running ones
        pages = {"full": self.full.alloc(n, owner), "swa": self.swa.alloc(n, owner)}
        self.alloc.close_owner(owner)
        return seq, {name: [None] * hit + p.tolist() for name, p in pages.items()}

    def insert(self, prepared: tuple[list[int], dict[str, list[int | None]]]) -> None:
        self.tree.insert(*prepared)

    def match(self, i: int) -> int:
        hit = self.tree.match(_seq(i) + [1, 2, 3, 4])
        return len(hit.pages["full"].pages) * self.P

    def evict_leaf(self) -> int:
        return self.tree.evict(self.leaf_bytes).bytes_freed


class SglangSide:
    """sglang's SWATokenToKVPoolAllocator and UnifiedRadixCache(FULL, SWA) on CPU at page_size P, as its own
    unit tests build them (sglang/test/kits/unified_radix_cache/fixtures.py; construction in
    sgl_build.build_swa). At P > 1 allocation goes through alloc_extend / alloc_decode with the requests'
    lengths and last slots, as sglang's alloc_for_extend / alloc_for_decode call them."""

    def __init__(self, tree_core: str | None, P: int) -> None:
        import torch
        from sglang.srt.mem_cache.base_prefix_cache import EvictParams, InsertParams, MatchPrefixParams
        from sglang.srt.mem_cache.radix_cache import RadixKey

        from .sgl_build import build_swa

        pools = build_swa(POOL_TOKENS, POOL_TOKENS, WINDOW, BATCH, SEQ + 8, tree_core, head_dim=8, page_size=P)
        self.P, self.torch, self.RadixKey = P, torch, RadixKey
        self.EvictParams, self.InsertParams = EvictParams, InsertParams
        self.MatchPrefixParams = MatchPrefixParams
        self.alloc, self.cache = pools.allocator, pools.cache
        self.tree_core = type(self.cache.tree_core).__name__
        self.lens = torch.tensor(RUNNING, dtype=torch.int64)
        running = self._extend(torch.zeros(BATCH, dtype=torch.int64), self.lens.clone(),
                               torch.full((BATCH,), -1, dtype=torch.int64))
        self.last_loc = running[self.lens.cumsum(0) - 1]
        self.prefill = (torch.zeros(PREFILL_REQS, dtype=torch.int64),
                        torch.full((PREFILL_REQS,), PREFILL_TOKENS, dtype=torch.int64),
                        torch.full((PREFILL_REQS,), -1, dtype=torch.int64))

    def _extend(self, prefix: Any, seq: Any, last_loc: Any) -> Any:
        n = int((seq - prefix).sum())
        if self.P == 1:
            return self.alloc.alloc(n)
        return self.alloc.alloc_extend(prefix, prefix, seq, seq, last_loc, n)

    def _new_pages(self, slots: Any) -> Any:
        """The slots of `slots` that opened a page (what freeing them gives back)."""
        return slots if self.P == 1 else slots[slots % self.P == 0]

    def _key(self, tokens: list[int]) -> Any:
        return self.RadixKey(array("q", tokens))

    def alloc_prefill(self) -> Any:
        return self._extend(*self.prefill)

    def free_prefill(self, pages: Any) -> None:
        self.alloc.free(pages)

    def alloc_decode(self) -> Any:
        self.lens += 1
        out = self.alloc.alloc(BATCH) if self.P == 1 else self.alloc.alloc_decode(self.lens, self.lens,
                                                                                  self.last_loc)
        prev, self.last_loc = self.last_loc, out
        return out, prev

    def free_decode(self, step: tuple[Any, Any]) -> None:
        """Undo the latest alloc_decode step."""
        out, self.last_loc = step
        self.lens -= 1
        self.alloc.free(self._new_pages(out))

    def window_pages(self) -> Any:
        """One page's slots for each running request (release_window's setup)."""
        zeros = self.torch.zeros(BATCH, dtype=self.torch.int64)
        return self._extend(zeros, zeros + self.P, zeros - 1)

    def release_window(self, pages: Any) -> None:
        self.alloc.free_swa(pages)

    def free_full(self, pages: Any) -> None:
        self.alloc.free_full(pages)

    def prepare_insert(self, i: int) -> tuple[list[int], Any]:
        seq = _seq(i)
        hit = self.cache.match_prefix(self.MatchPrefixParams(key=self._key(seq)))
        cached = self.cache.path_device_indices(hit.last_device_node)[:hit.device_prefix_len]
        t = self.torch.tensor
        last = cached[-1:] if len(cached) else t([-1])
        new = self._extend(t([hit.device_prefix_len]), t([len(seq)]), last.to(self.torch.int64))
        return seq, self.torch.cat([cached, new])

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
         lambda _, steps: [side.free_decode(p) for p in reversed(steps)]),
        ("release_window", side.window_pages, side.release_window, lambda p, _: side.free_full(p)),
        ("match", nothing, lambda _: side.match(counter[0]), ignore),
        ("insert", lambda: side.prepare_insert(next_seq()), side.insert, ignore),
    ]
    res = {name: _time(setup, op, undo, reps) for name, setup, op, undo in table}
    for _ in range(reps):  # back to the tree size we started with
        side.evict_leaf()
    res["evict"] = _time(nothing, lambda _: side.evict_leaf(), evict_then_refill, reps)
    return res


def run_at(P: int, reps: int, sglang_tree_core: str | None) -> dict[str, Any]:
    """Build both sides at P tokens per page, fill both trees with TREE_SEQS sequences, time every op,
    return the report."""
    t0 = time.perf_counter()
    jenga, sgl = JengaSide(P), SglangSide(sglang_tree_core, P)
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
    workload = {"tokens_per_page": P, "window": WINDOW, "pool_tokens_per_type": POOL_TOKENS,
                "decode_batch": BATCH, "decode_steps": DECODE_STEPS, "prefill": f"{PREFILL_REQS}x{PREFILL_TOKENS}",
                "tree": f"{TREE_SEQS}x{SEQ} (shared {SHARED})",
                "cached_pages_per_type": jenga.tree.stats().cached_pages["full"], "reps": 3 * reps,
                "sglang_tree_core": sgl.tree_core, "torch_threads": 1,
                "seconds": round(time.perf_counter() - t0, 1)}
    return {"ops": ops, "workload": workload}


def run(reps: int, sglang_tree_core: str | None, sizes: tuple[int, ...] = (1, 16)) -> dict[str, Any]:
    """`run_at` for each page size, keyed "P1", "P16"."""
    return {f"P{P}": run_at(P, reps, sglang_tree_core) for P in sizes}


def _table(report: dict[str, Any]) -> str:
    sizes = list(report)
    lines = [f"{'op':<16}" + "".join(f"{f'{P} jenga us':>14}{'sglang us':>11}{'ratio':>7}" for P in sizes)]
    for op in report[sizes[0]]["ops"]:
        row = [report[P]["ops"][op] for P in sizes]
        lines.append(f"{op:<16}" + "".join(f"{r['jenga_us']:>14.1f}{r['sglang_us']:>11.1f}{r['ratio']:>7.2f}"
                                           for r in row))
    for P in sizes:
        lines.append(f"{P}: " + ", ".join(f"{k}={v}" for k, v in report[P]["workload"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON here")
    parser.add_argument("--reps", type=int, default=10, help="timings per op per round (3 rounds)")
    parser.add_argument("--sglang-tree-core", choices=["python", "rust"], default=None,
                        help="sglang's UnifiedRadixCache tree core (default: sglang's own default)")
    parser.add_argument("--page-sizes", type=int, nargs="+", default=[1, 16], help="tokens per page to run")
    args = parser.parse_args(argv)
    report = run(args.reps, args.sglang_tree_core, tuple(args.page_sizes))
    print(_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
