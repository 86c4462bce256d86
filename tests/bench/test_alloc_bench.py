"""bench.alloc runs both sides at P = 16 (sglang's paged SWA allocator through alloc_extend / alloc_decode),
their trees hold the same hits, and the Jenga side stays consistent (run_at asserts both)."""

from __future__ import annotations

from sglang_jenga.bench.alloc import run_at


def test_alloc_bench_at_sixteen_tokens_per_page() -> None:
    report = run_at(16, reps=1, sglang_tree_core=None)
    assert set(report["ops"]) == {"alloc_prefill", "free_prefill", "alloc_decode", "decode_16_steps",
                                  "release_window", "match", "insert", "evict"}
    assert all(r["jenga_us"] > 0 and r["sglang_us"] > 0 for r in report["ops"].values())
    assert report["workload"]["tokens_per_page"] == 16
