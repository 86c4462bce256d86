"""The scheduler timing hooks book what they wrap, and the benchmark's per-batch figures are snapshot differences
(the servers themselves run in `python -m sglang_jenga.bench.scheduler_cost`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sglang_jenga.adapter import timing
from sglang_jenga.bench.scheduler_cost import per_batch


def _batch(mode: str) -> SimpleNamespace:
    return SimpleNamespace(forward_mode=SimpleNamespace(is_decode=lambda: mode == "decode",
                                                        is_extend=lambda: mode == "extend"))


def test_hooks_book_calls_under_the_batch_kind() -> None:
    before = timing.snapshot()
    plans = [SimpleNamespace(batch_to_run=_batch("decode")), SimpleNamespace(batch_to_run=None)]
    for plan in plans:
        assert timing.next_batch(lambda scheduler, p=plan: p, object()) is plan
    assert timing.process_result(lambda scheduler, batch: "done", object(), _batch("extend")) == "done"
    with pytest.raises(ValueError):
        timing.timed("release")(lambda: (_ for _ in ()).throw(ValueError()))
    after = timing.snapshot()
    for key in ("next_batch/decode", "next_batch/idle", "process_result/prefill", "release"):
        assert after[key][0] == before.get(key, [0, 0])[0] + 1, key  # booked once, also when it raised


def test_per_batch_divides_snapshot_differences() -> None:
    before = {"next_batch/decode": [10, 1_000_000], "process_result/decode": [10, 500_000], "alloc_decode": [10, 0]}
    after = {"next_batch/decode": [30, 5_000_000], "process_result/decode": [30, 2_500_000],
             "next_batch/prefill": [2, 600_000], "next_batch/idle": [5, 200_000],
             "process_result/prefill": [2, 200_000], "alloc_decode": [30, 400_000]}
    got = per_batch(before, after)
    assert got["decode_steps"] == 20 and got["decode_step_us"] == pytest.approx((4e6 + 2e6) / 20 / 1e3)
    assert got["prefill_batches"] == 2 and got["prefill_batch_us"] == pytest.approx(1e6 / 2 / 1e3)
    assert got["alloc_decode_us"] == pytest.approx(20.0) and got["match_us"] == 0.0
