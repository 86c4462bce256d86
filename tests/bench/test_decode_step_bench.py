"""The decode-step benchmark allocates one slot per running request through sglang's `alloc_token_slots` on both
sides (the timing loop checks every step's slots are distinct; jenga's records pass `check_integrity` after),
warm and cold, and reports each case with its ratio. Its figures are not asserted (machine-dependent): README and
docs/design.md carry them."""

from __future__ import annotations

import json
from pathlib import Path

from sglang_jenga.bench import decode_step


def test_both_models_warm_and_cold(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    assert decode_step.main(["--requests", "8", "--reps", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    workload = report.pop("workload")
    assert sorted(report) == ["full/cold", "full/warm", "swa/cold", "swa/warm"]
    for case, r in report.items():
        assert r["jenga_us"] > 0 and r["sglang_us"] > 0, case
        assert abs(r["ratio"] - r["jenga_us"] / r["sglang_us"]) < 1e-2 * r["ratio"] + 1e-2, case
    assert workload["requests"] == 8 and workload["reps"] == 6
