"""The allocator microbenchmark runs both sides at P = 1 and P = 16 in one call (one rep per op) and reports
every op with its ratio; at P = 16 one request in 16 starts a page at each decode step. Its figures are not
asserted (machine-dependent): README and docs/design.md carry them."""

from __future__ import annotations

import json
from pathlib import Path

from sglang_jenga.bench import alloc

OPS = ("alloc_prefill", "free_prefill", "alloc_decode", "decode_16_steps", "release_window", "match", "insert",
       "evict")


def test_both_page_sizes_in_one_run(tmp_path: Path) -> None:
    out = tmp_path / "alloc.json"
    assert alloc.main(["--reps", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["page_sizes"]
    assert sorted(report) == ["1", "16"]
    for page_size, one in report.items():
        assert tuple(one["ops"]) == OPS
        for op, r in one["ops"].items():
            assert r["jenga_us"] > 0 and r["sglang_us"] > 0, (page_size, op)
            assert abs(r["ratio"] - r["jenga_us"] / r["sglang_us"]) < 1e-2 * r["ratio"] + 1e-3, (page_size, op)
        assert one["workload"]["page_size"] == int(page_size)
    assert report["1"]["workload"]["requests_opening_a_page_per_step"] == alloc.BATCH
    assert report["16"]["workload"]["requests_opening_a_page_per_step"] == alloc.BATCH // 16
