"""Microbenchmark: Jenga core vs sglang 0.5.23's allocator and radix cache, same operations, same run.

Model: a full-attention + sliding-window hybrid (window 1024 tokens), as sglang's SWATokenToKVPoolAllocator +
UnifiedRadixCache(FULL, SWA) serve it; the Jenga side uses Gemma-3-27B's real layout (at P = 1 a large page =
26 full or 5 sliding-window pages). Both pools hold 262,144 tokens per type. One table per page size P
(`--page-sizes`, default 1 and 16); sizes below in tokens.

  alloc_prefill   16 requests x 512 tokens, both types (sglang: one alloc(8192), at P > 1 one paged
                  alloc_extend; Jenga: per-request request-aware allocs of 512 / P pages, 2 types)
  free_prefill    free those 8,192 tokens
  alloc_decode    one decode step of 256 running requests holding 37 tokens (at P > 1: 37 + i mod P, so that
                  1 in P of them starts a page at each step). sglang: alloc(256), at P > 1 alloc_decode (a slot
                  for each request); Jenga: alloc_each x 2 types for the requests that start a page (all 256 at
                  P = 1). Undone after each timing, so every request still has a free slot in its open large
                  page
  decode_16_steps 16 such steps in a row (not undone in between): every request fills its open large pages
                  and opens new ones at the rate a real decode does
  release_window  the requests that got a page at one step free its sliding-window page (sglang: free_swa)
  match           a 4,100-token prompt against a tree of 32 cached 4,096-token sequences (shared 512-token
                  prefix), hitting 4,096 tokens, and the pages of the hit (sglang: match_prefix +
                  path_device_indices, what the scheduler needs for req_to_token)
  insert          a new 4,096-token sequence sharing the 512-token prefix; the match and allocation before it
                  are not timed
  evict           evict the least recently used 3,584-token leaf (both types)

Tokens reach both sides as int64 arrays made outside the timer, as sglang's scheduler hands them to its cache
(`RadixKey.token_ids`, an `array("q")`). Until 2026-12-08 the match timing also built the prompt as a Python list
and, on sglang's side, converted it to an array: ~115 of sglang's ~130 us, which hid that its match itself takes
~10 us.

What each side returns differs at P > 1: Jenga's core hands out page ids (turning them into slots is the
adapter's work, not timed here), sglang's paged API returns a slot for every token and runs its CPU path
(`alloc_extend_naive` / `alloc_decode_naive`, torch ops where a GPU launches one Triton kernel). So the P > 1
rows compare the core's page bookkeeping with sglang's CPU-side allocator, not a GPU scheduler's costs; the
server's scheduler cost per step (bench/scheduler_cost.py, `--page-size 16`) is the end-to-end comparison.

Owner ids: the running requests are 0..255, the prefills 256..271, the tree's sequences 2^20 + i (each request
its own id, as in an engine). Each op is timed `--reps` times per round, 3 rounds (setup outside the timer),
Jenga and sglang interleaved; the median is reported in microseconds. Both sides run single-threaded on the CPU
(torch.set_num_threads(1)): here sglang's allocator does its bookkeeping with CPU tensor ops, where a GPU run
would launch kernels. sglang's tree core is its default (a Rust core in 0.5.23); `--sglang-tree-core python`
selects its Python core. Prints a table per page size and, with `--json OUT`, writes
{"page_sizes": {P: {"ops": {NAME: {"jenga_us", "sglang_us", "ratio"}}, "workload": {...}}}}. Runs in ~10 s.
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
from sglang_jenga.core.specs import ceil_div

WINDOW = 1024
POOL_TOKENS = 1 << 18
BATCH = 256
DECODE_STEPS = 16
PREFILL_REQS, PREFILL_TOKENS = 16, 512
SEQ, SHARED, TREE_SEQS = 4096, 512, 32
PROMPT = 37  # tokens a running request holds before the timed steps (request o: PROMPT + o % P)
PAGE_SIZES = (1, 16)
# Owner ids: running requests 0..BATCH-1, prefills after them, tree sequences from SEQ_OWNER: a request's id
# is its own (reusing a running request's id would close that request's open large pages).
SEQ_OWNER = 1 << 20


def _seq(i: int) -> array[int]:
    """Sequence i: the shared 512-token prefix, then tokens no other sequence has. An int64 array, as sglang's
    scheduler hands a request's tokens to the cache (RadixKey.token_ids)."""
    return array("q", range(SHARED)) + array("q", range(10**6 * (i + 1), 10**6 * (i + 1) + SEQ - SHARED))


def _query(i: int) -> array[int]:
    """A prompt whose first 4,096 tokens are sequence i."""
    return _seq(i) + array("q", [1, 2, 3, 4])


def _held(owner: int, page_size: int) -> int:
    """Tokens running request `owner` holds before the timed steps: staggered at P > 1, so that 1 in P of the
    requests starts a page at each decode step (P = 16: 16 of 256), as in a real batch."""
    return PROMPT + owner % page_size


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


class JengaSide:
    """The Jenga core with Gemma-3-27B's layout at P tokens per page. Its unit is the page (slots are the
    adapter's arithmetic, outside the core)."""

    def __init__(self, page_size: int) -> None:
        self.P = page_size
        self.layout = plan_layout(MODELS["gemma-3-27b"], page_size)
        per_large = {t.name: t.pages_per_large for t in self.layout.types}
        num_large = sum(ceil_div(POOL_TOKENS // page_size, k) for k in per_large.values())
        self.alloc = TwoLevelAllocator(self.layout, num_large)
        self.tree = TypedRadixTree(self.alloc)
        self.full, self.swa = self.alloc.of("full"), self.alloc.of("swa")
        held = [ceil_div(_held(o, page_size), page_size) for o in range(BATCH)]  # pages
        self.running = [(self.full.alloc(n, o), self.swa.alloc(n, o)) for o, n in enumerate(held)]
        # the requests whose token starts a page at each step (P = 1: all of them)
        self.steps = [[o for o in range(BATCH) if (_held(o, page_size) + s) % page_size == 0]
                      for s in range(DECODE_STEPS)]
        self.leaf_bytes = (SEQ - SHARED) // page_size * sum(t.page_bytes for t in self.layout.types)

    def alloc_prefill(self) -> list[tuple[list[int], list[int]]]:
        n = PREFILL_TOKENS // self.P
        return [(self.full.alloc(n, o), self.swa.alloc(n, o)) for o in range(BATCH, BATCH + PREFILL_REQS)]

    def free_prefill(self, pages: list[tuple[list[int], list[int]]]) -> None:
        for f, s in pages:
            self.full.free(f)
            self.swa.free(s)

    def decode_step(self, step: int) -> tuple[list[int], list[int]]:
        owners = self.steps[step]
        return self.full.alloc_each(owners), self.swa.alloc_each(owners)

    def undo_decode(self, pages: tuple[list[int], list[int]]) -> None:
        self.full.free(pages[0])
        self.swa.free(pages[1])

    def release_window(self, pages: tuple[list[int], list[int]]) -> None:
        self.swa.free(pages[1])

    def free_full(self, pages: tuple[list[int], list[int]]) -> None:
        self.full.free(pages[0])

    def prepare_insert(self, i: int) -> tuple[array[int], dict[str, list[int | None]]]:
        seq = _seq(i)
        hit = self.tree.match(seq).hit_tokens // self.P
        n = len(seq) // self.P - hit
        owner = SEQ_OWNER + i  # a request of its own, not one of the running ones
        pages = {"full": self.full.alloc(n, owner), "swa": self.swa.alloc(n, owner)}
        self.alloc.close_owner(owner)
        return seq, {name: [None] * hit + p for name, p in pages.items()}

    def insert(self, prepared: tuple[array[int], dict[str, list[int | None]]]) -> None:
        self.tree.insert(*prepared)

    def match(self, query: array[int]) -> int:
        """Tokens of the hit (its full-attention pages gathered, as the adapter needs them)."""
        hit = self.tree.match(query)
        return len(hit.pages["full"].pages) * self.P

    def evict_leaf(self) -> int:
        return self.tree.evict(self.leaf_bytes).bytes_freed


class SglangSide:
    """sglang's SWATokenToKVPoolAllocator and UnifiedRadixCache(FULL, SWA) on CPU at P tokens per page, as its
    own unit tests build them (sglang/test/kits/unified_radix_cache/fixtures.py; construction in
    sgl_build.build_swa). At P > 1 its paged API (`alloc_extend` / `alloc_decode`, slots of every token) runs its
    CPU path; a decode step's undo frees only the pages it opened."""

    def __init__(self, tree_core: str | None, page_size: int) -> None:
        import torch
        from sglang.srt.mem_cache.base_prefix_cache import EvictParams, InsertParams, MatchPrefixParams
        from sglang.srt.mem_cache.radix_cache import RadixKey

        from .sgl_build import build_swa

        self.P = page_size
        pools = build_swa(POOL_TOKENS, POOL_TOKENS, WINDOW, BATCH, SEQ + 8, tree_core, head_dim=8,
                          page_size=page_size)
        self.torch, self.RadixKey = torch, RadixKey
        self.EvictParams, self.InsertParams = EvictParams, InsertParams
        self.MatchPrefixParams = MatchPrefixParams
        self.alloc, self.cache = pools.allocator, pools.cache
        self.tree_core = type(self.cache.tree_core).__name__
        self.lens = torch.tensor([_held(o, page_size) for o in range(BATCH)], dtype=torch.int64)
        self.running = self._extend(torch.zeros(BATCH, dtype=torch.int64), self.lens)
        self.last = self.running[torch.cumsum(self.lens, 0) - 1]  # each request's last slot
        self._prev = self.last

    def _key(self, tokens: array[int]) -> Any:
        return self.RadixKey(tokens)

    def _extend(self, prefix: Any, seq: Any, last: Any = None) -> Any:
        """Slots for tokens [prefix, seq) of each request: `alloc` at P = 1, the paged `alloc_extend` above."""
        n = int((seq - prefix).sum())
        if self.P == 1:
            return self.alloc.alloc(n)
        last = self.torch.full_like(seq, -1) if last is None else last
        return self.alloc.alloc_extend(prefix, prefix, seq, seq, last, n)

    def alloc_prefill(self) -> Any:
        torch = self.torch
        return self._extend(torch.zeros(PREFILL_REQS, dtype=torch.int64),
                            torch.full((PREFILL_REQS,), PREFILL_TOKENS, dtype=torch.int64))

    def free_prefill(self, pages: Any) -> None:
        self.alloc.free(pages)

    def decode_step(self, step: int) -> Any:
        """Step `step` of consecutive decode steps (each one's last slots are the previous one's)."""
        if self.P == 1:
            return self.alloc.alloc(BATCH)
        seq = self.lens + step + 1
        out = self.alloc.alloc_decode(seq, seq, self.last if step == 0 else self._prev)
        self._prev = out
        return out[(seq - 1) % self.P == 0]  # the slots that opened a page

    def undo_decode(self, slots: Any) -> None:
        self.alloc.free(slots)

    def release_window(self, slots: Any) -> None:
        self.alloc.free_swa(slots)

    def free_full(self, slots: Any) -> None:
        self.alloc.free_full(slots)

    def prepare_insert(self, i: int) -> tuple[array[int], Any]:
        seq = _seq(i)
        hit = self.cache.match_prefix(self.MatchPrefixParams(key=self._key(seq)))
        cached = self.cache.path_device_indices(hit.last_device_node)[:hit.device_prefix_len]
        torch = self.torch
        new = self._extend(torch.tensor([len(cached)]), torch.tensor([len(seq)]),
                           cached[-1:].to(torch.int64) if len(cached) else None)
        return seq, torch.cat([cached, new])

    def insert(self, prepared: tuple[array[int], Any]) -> None:
        seq, value = prepared
        self.cache.insert(self.InsertParams(key=self._key(seq), value=value))

    def match(self, query: array[int]) -> int:
        hit = self.cache.match_prefix(self.MatchPrefixParams(key=self._key(query)))
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
        ("alloc_decode", nothing, lambda _: side.decode_step(0), lambda _, p: side.undo_decode(p)),
        ("decode_16_steps", nothing, lambda _: [side.decode_step(s) for s in range(DECODE_STEPS)],
         lambda _, steps: [side.undo_decode(p) for p in steps]),
        ("release_window", lambda: side.decode_step(0), side.release_window, lambda p, _: side.free_full(p)),
        ("match", lambda: _query(counter[0]), side.match, ignore),
        ("insert", lambda: side.prepare_insert(next_seq()), side.insert, ignore),
    ]
    res = {name: _time(setup, op, undo, reps) for name, setup, op, undo in table}
    for _ in range(reps):  # back to the tree size we started with
        side.evict_leaf()
    res["evict"] = _time(nothing, lambda _: side.evict_leaf(), evict_then_refill, reps)
    return res


def run(reps: int, sglang_tree_core: str | None, page_size: int = 1) -> dict[str, Any]:
    """Build both sides at `page_size` tokens per page, fill both trees with TREE_SEQS sequences, time every
    op, return the report."""
    t0 = time.perf_counter()
    jenga, sgl = JengaSide(page_size), SglangSide(sglang_tree_core, page_size)
    for side in (jenga, sgl):
        for i in range(TREE_SEQS):
            side.insert(side.prepare_insert(i))
    assert jenga.match(_query(3)) == sgl.match(_query(3)) == SEQ  # same hit, same pages
    timings: dict[str, dict[str, list[float]]] = {"jenga": {}, "sglang": {}}
    counters = {"jenga": [TREE_SEQS - 1], "sglang": [TREE_SEQS - 1]}
    for _ in range(3):  # interleave the sides so machine noise hits both
        for name, side in (("jenga", jenga), ("sglang", sgl)):
            for op, samples in _ops(side, reps, counters[name]).items():
                timings[name].setdefault(op, []).extend(samples)
    last = counters["jenga"][0]
    assert jenga.match(_query(last)) == sgl.match(_query(last)) == SEQ
    jenga.alloc.check_integrity()
    jenga.tree.check_integrity()
    ops = {}
    for op in timings["jenga"]:
        j, s = _median_us(timings["jenga"][op]), _median_us(timings["sglang"][op])
        ops[op] = {"jenga_us": round(j, 2), "sglang_us": round(s, 2), "ratio": round(j / s, 3)}
    workload = {"page_size": page_size, "window": WINDOW, "pool_tokens_per_type": POOL_TOKENS, "decode_batch": BATCH,
                "decode_steps": DECODE_STEPS, "requests_opening_a_page_per_step": len(jenga.steps[0]),
                "prefill": f"{PREFILL_REQS}x{PREFILL_TOKENS}",
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
    parser.add_argument("--page-sizes", type=int, nargs="+", default=list(PAGE_SIZES),
                        help="tokens per page, one table each (default: 1 16)")
    args = parser.parse_args(argv)
    report: dict[str, dict[str, Any]] = {"page_sizes": {}}
    for page_size in args.page_sizes:
        report["page_sizes"][str(page_size)] = one = run(args.reps, args.sglang_tree_core, page_size)
        print(f"P = {page_size}")
        print(_table(one))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
