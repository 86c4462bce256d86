"""The scheduler's CPU time outside the forward, per batch, for any memory manager (bench/scheduler_cost.py).

With SGLANG_JENGA_TIME_SCHEDULER=1 the plugin wraps, in every scheduler process, the two scheduler steps around
each forward and the memory-manager entry points inside them (targets in compat.py, the same functions
whichever manager runs):

  next_batch      `Scheduler.get_next_batch_to_run`: admission (prefix match, budget, eviction), the batch's
                  allocation (`alloc_for_extend` / `alloc_for_decode`), window release, retraction
  process_result  `Scheduler.process_batch_result`: outputs, checkpoints of chunks, releases of finished rows
  match, alloc_extend, alloc_decode, checkpoint, release, release_window
                  the memory manager's part of those (inclusive, nested inside the two steps)

Time is the scheduler thread's CPU time (`time.thread_time_ns`). The two steps are booked under the kind of the
batch they prepared or processed ("decode", "prefill", or "idle" for a step that found no batch); the
memory-manager entry points under their own names. `snapshot()` is what /server_info shows under
"scheduler_timing": {key: [calls, total ns]}.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

TIMING_ENV = "SGLANG_JENGA_TIME_SCHEDULER"
_totals: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])


def enabled() -> bool:
    return os.environ.get(TIMING_ENV) == "1"


def snapshot() -> dict[str, list[int]]:
    return {key: list(v) for key, v in sorted(_totals.items())}


def _book(key: str, ns: int) -> None:
    entry = _totals[key]
    entry[0] += 1
    entry[1] += ns


def _kind(batch: Any) -> str:
    if batch is None:
        return "idle"
    mode = batch.forward_mode
    return "decode" if mode.is_decode() else "prefill" if mode.is_extend() else "other"


def next_batch(original: Any, scheduler: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.thread_time_ns()
    plan = original(scheduler, *args, **kwargs)
    _book(f"next_batch/{_kind(plan.batch_to_run)}", time.thread_time_ns() - start)
    return plan


def process_result(original: Any, scheduler: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.thread_time_ns()
    out = original(scheduler, batch, *args, **kwargs)
    _book(f"process_result/{_kind(batch)}", time.thread_time_ns() - start)
    return out


def timed(name: str) -> Callable[..., Any]:
    """An AROUND hook that books each call of the wrapped function under `name`."""

    def hook(original: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.thread_time_ns()
        try:
            return original(*args, **kwargs)
        finally:
            _book(name, time.thread_time_ns() - start)

    hook.__qualname__ = f"timed[{name}]"
    return hook
