"""Replay a trace through one memory manager's real allocator and prefix cache.

    python -m sglang_jenga.bench.replay --model SHAPE --trace FILE --kv-gib G --manager M --json OUT

Managers (SHAPE from profiles.SHAPES, i.e. sglang_jenga.core.shapes.MODELS plus gemma-2-9b):
  jenga         the core: plan_layout + TwoLevelAllocator + TypedRadixTree, every layer type in G GiB
  sglang        sglang 0.5.23's classes as its server builds them for that model (sglang_manager.py)
  sglang-tuned  sglang with the best static ratio of a sweep (--swa-full-tokens-ratio for SWA hybrids, also
                for Gemma-2/3 with their hybrid SWA memory enabled; --mamba-full-memory-ratio for Mamba
                hybrids): an oracle, as users cannot know the best ratio in advance
  uniform       every attention layer full attention, one page per token for all layers (the paper's
                baseline; sglang's full-pool classes)

One scheduler loop for all managers; per step (a step is `step_s` simulated seconds):
  1. decode: one token for every running request; if memory runs out (after the manager evicted its
     cache), retract the newest request (it goes back to the head of the queue and is re-prefilled later
     with the tokens it generated) and retry; a request that cannot grow even alone is aborted (counted as
     rejected);
  2. finish the requests that generated output_len tokens (their sequence is cached);
  3. admit in arrival order while the batch is below the manager's max_running, free + evictable memory
     covers `reserve` more tokens for every running request and the new one, and the prefill (reusing a
     cached prefix, in chunks of 8192 tokens) fits: each manager checks its budget after matching and before
     allocating, as sglang's PrefillAdder does; a prefill yields the first output token. A request that
     cannot be admitted into an idle system is rejected.
Idle gaps before the next arrival are skipped: the clock jumps, no step is counted.

Metrics (JSON): mean_running and max_running (requests in the batch after each step's admissions),
mean_running_queued (the mean over the steps that ended with requests still waiting: the batch size memory or
max_running allows, without the drain at the end of the trace), queued_steps,
tokens_per_step (output tokens / steps), hit_rate (cached prompt tokens / prefilled prompt tokens, re-prefills
included), retractions, steps, finished, rejected, and
  waste_fraction = sum over steps of (wasted bytes) / sum over steps of (bytes in use), where, at the end of a
  step, bytes in use = the running requests' held bytes + the pool's holes, and wasted bytes = held - readable
  + holes (managers.py: held are the bytes a request's own and pinned pages occupy; readable the part its next
  decode steps can read: out-of-window sliding-window tokens, finished chunks, encoder tokens in
  self-attention layers, text tokens in cross-attention layers and state padding are unreadable; holes are
  free small pages inside partly used large pages). Cached pages nobody pins are not in use.
Same trace, same arguments -> the same JSON (no wall-clock values in it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .managers import Manager, Seq
from .profiles import SHAPES, sglang_layout
from .traces import TraceRequest, load, materialize

GIB = 1 << 30
MANAGERS = ("jenga", "sglang", "sglang-tuned", "uniform")
SWA_RATIOS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
MAMBA_RATIOS = (0.1, 0.25, 0.5, 0.9, 1.5, 3.0, 6.0, 12.0, 24.0, 48.0)


@dataclass(frozen=True)
class ReplayConfig:
    """Scheduler knobs shared by every manager. `check_every` > 0 runs manager.check every that many steps;
    `series_points` bounds the time series kept for plots."""

    step_s: float = 0.02
    reserve: int = 16
    check_every: int = 0
    max_steps: int = 2_000_000
    series_points: int = 400
    progress: bool = False


class _Stats:
    """Accumulators of one replay."""

    def __init__(self) -> None:
        self.steps = self.tick = self.output_tokens = self.prompt_tokens = self.hit_tokens = 0
        self.retractions = self.finished = self.rejected = self.admissions = 0
        self.running_sum = self.running_max = self.queued_steps = self.queued_running_sum = 0
        self.held = self.wasted = 0
        self.series: list[tuple[int, int, float, int, float]] = []  # step, running, waste, wasted B, pool use


def replay(manager: Manager, trace: Sequence[TraceRequest], cfg: ReplayConfig = ReplayConfig()) -> dict[str, Any]:
    """Run the scheduler loop (module docstring) to the end of `trace`; returns the metrics dict."""
    tokens = materialize(trace)
    pending = deque(Seq(r, tokens[r.id].seq, tokens[r.id].image_key, i) for i, r in enumerate(trace))
    waiting: deque[Seq] = deque()
    running: list[Seq] = []
    st = _Stats()
    bar = _progress(cfg, len(trace))
    while pending or waiting or running:
        now = st.tick * cfg.step_s
        while pending and pending[0].req.arrival_s <= now + 1e-9:
            waiting.append(pending.popleft())
        if not waiting and not running:
            st.tick = math.ceil(pending[0].req.arrival_s / cfg.step_s - 1e-9)  # idle: skip ahead
            continue
        finished = _finish(manager, _decode(manager, running, waiting, st), st)
        finished += _finish(manager, _admit(manager, running, waiting, st, cfg), st)
        _record(manager, running, st, queued=bool(waiting))
        bar(finished)
        st.steps += 1
        st.tick += 1
        if cfg.check_every and st.steps % cfg.check_every == 0:
            manager.check(running)
        if st.steps >= cfg.max_steps:
            raise RuntimeError(f"{manager.name}: no end after {cfg.max_steps} steps")
    bar(0, close=True)
    manager.check(running)
    return _report(manager, st, cfg.series_points)


def _decode(manager: Manager, running: list[Seq], waiting: deque[Seq], st: _Stats) -> list[Seq]:
    """One token for every running request, retracting the newest on shortage (a request that cannot grow
    even alone is aborted and counted as rejected); returns the finished ones."""
    while running and not manager.decode(running):
        victim = running.pop()
        manager.retract(victim)
        if running:
            waiting.appendleft(victim)
            st.retractions += 1
        else:
            st.rejected += 1
    for s in running:
        s.kv_len += 1
        s.generated += 1
    st.output_tokens += len(running)
    done = [s for s in running if s.done]
    running[:] = [s for s in running if not s.done]
    return done


def _admit(manager: Manager, running: list[Seq], waiting: deque[Seq], st: _Stats,
           cfg: ReplayConfig) -> list[Seq]:
    """Admit in arrival order (module docstring); returns the admitted requests that are already done."""
    done: list[Seq] = []
    while waiting and len(running) < manager.max_running:
        s = waiting[0]
        idle = not running and not done
        if not manager.headroom_ok(len(running) + 1, 1 if idle else cfg.reserve):
            if idle:
                waiting.popleft()
                st.rejected += 1
                continue
            break
        kv_len = s.req.prompt_len + max(s.generated, 1) - 1
        hit = manager.admit(s, kv_len)
        if hit is None:
            if idle:
                waiting.popleft()
                st.rejected += 1
                continue
            break
        waiting.popleft()
        st.admissions += 1
        st.prompt_tokens += kv_len
        st.hit_tokens += hit
        s.kv_len = kv_len
        if s.generated == 0:
            s.generated = 1
            st.output_tokens += 1
        (done if s.done else running).append(s)
    return done


def _finish(manager: Manager, done: list[Seq], st: _Stats) -> int:
    for s in done:
        manager.finish(s)
    st.finished += len(done)
    return len(done)


def _record(manager: Manager, running: list[Seq], st: _Stats, queued: bool) -> None:
    n = len(running)
    st.running_sum += n
    st.running_max = max(st.running_max, n)
    if queued:  # requests are waiting: the batch size is what memory (or max_running) allows
        st.queued_steps += 1
        st.queued_running_sum += n
    usage = manager.usage()
    held = wasted = usage.bytes_holes
    for s in running:
        fp = manager.footprint(s)
        held += fp.held_bytes
        wasted += fp.held_bytes - fp.readable_bytes
    st.held += held
    st.wasted += wasted
    use = 1 - usage.bytes_free / usage.bytes_total if usage.bytes_total else 0.0
    st.series.append((st.steps, n, wasted / held if held else 0.0, wasted, use))


def _report(manager: Manager, st: _Stats, points: int) -> dict[str, Any]:
    steps = max(st.steps, 1)
    stride = max(1, len(st.series) // points)
    series = st.series[::stride]
    return {
        "manager": manager.name, "model": manager.model.name,
        "mean_running": round(st.running_sum / steps, 4), "max_running": st.running_max,
        "mean_running_queued": round(st.queued_running_sum / st.queued_steps, 4) if st.queued_steps else 0.0,
        "queued_steps": st.queued_steps,
        "tokens_per_step": round(st.output_tokens / steps, 4),
        "waste_fraction": round(st.wasted / st.held, 6) if st.held else 0.0,
        "hit_rate": round(st.hit_tokens / st.prompt_tokens, 6) if st.prompt_tokens else 0.0,
        "retractions": st.retractions, "steps": st.steps, "finished": st.finished, "rejected": st.rejected,
        "admissions": st.admissions, "output_tokens": st.output_tokens,
        "pool": manager.describe(),
        "series": {"step": [p[0] for p in series], "running": [p[1] for p in series],
                   "waste": [round(p[2], 5) for p in series], "wasted_bytes": [p[3] for p in series],
                   "pool_use": [round(p[4], 5) for p in series]},
    }


def _progress(cfg: ReplayConfig, total: int) -> Callable[..., None]:
    if not cfg.progress:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="req", file=sys.stderr, leave=False)

    def update(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return update


# ----------------------------------------------------------------------------------------------- managers
def make_manager(name: str, model_name: str, kv_gib: float, trace: Sequence[TraceRequest], *,
                 ratio: float | None = None, force_hybrid_swa: bool = False) -> Manager:
    """Build manager `name` ("jenga", "sglang", "uniform") for `model_name` with a `kv_gib` GiB budget."""
    from .jenga_manager import JengaManager

    model, pool_bytes = SHAPES[model_name], int(kv_gib * GIB)
    if name == "jenga":
        return JengaManager(model, pool_bytes)
    from .sglang_manager import SglangManager

    slots = len(trace) + 1
    context = max(r.image_tokens + r.total_len for r in trace) + 8
    return SglangManager(model, pool_bytes, req_slots=slots, max_context=context, name=name, ratio=ratio,
                         force_hybrid_swa=force_hybrid_swa, uniform=name == "uniform")


def tuned_candidates(model_name: str) -> list[tuple[float | None, bool]]:
    """(ratio, force_hybrid_swa) pairs the sglang-tuned sweep tries."""
    model = SHAPES[model_name]
    kind = sglang_layout(model).kind
    forced = sglang_layout(model, force_hybrid_swa=True).kind
    if kind == "mamba":
        return [(r, False) for r in MAMBA_RATIOS]
    if kind == "swa":
        return [(r, False) for r in SWA_RATIOS]
    if forced == "swa":  # Gemma-2/3: sglang's default full pool, or its SWA pools if they were enabled
        return [(None, False)] + [(r, True) for r in SWA_RATIOS]
    return [(None, False)]


def run(manager: str, model_name: str, kv_gib: float, trace: Sequence[TraceRequest],
        cfg: ReplayConfig = ReplayConfig(), ratio: float | None = None) -> dict[str, Any]:
    """Replay `trace` with one manager; `sglang-tuned` sweeps tuned_candidates and keeps the best mean_running
    (ties: more tokens per step)."""
    if manager != "sglang-tuned":
        result = replay(make_manager(manager, model_name, kv_gib, trace, ratio=ratio), trace, cfg)
        result["kv_gib"] = kv_gib
        return result
    best: dict[str, Any] | None = None
    sweep = {}
    for r, forced in tuned_candidates(model_name):
        try:
            m = make_manager("sglang", model_name, kv_gib, trace, ratio=r, force_hybrid_swa=forced)
        except ValueError:
            continue  # a split that cannot hold one window or one Mamba request
        res = replay(m, trace, cfg)
        label = ("swa:" if forced else "") + ("default" if r is None else str(r))
        sweep[label] = res["mean_running"]
        if best is None or (res["mean_running"], res["tokens_per_step"]) > (best["mean_running"],
                                                                            best["tokens_per_step"]):
            best = res | {"tuned": label}
    assert best is not None, "no valid sglang configuration"
    return best | {"manager": "sglang-tuned", "sweep": sweep, "kv_gib": kv_gib}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Replay a trace through one memory manager.")
    p.add_argument("--model", required=True, choices=sorted(SHAPES))
    p.add_argument("--trace", required=True, help="trace file (JSON lines, see traces.py)")
    p.add_argument("--kv-gib", type=float, required=True, help="KV budget in GiB")
    p.add_argument("--manager", required=True, choices=MANAGERS)
    p.add_argument("--ratio", type=float, default=None,
                   help="sglang: --swa-full-tokens-ratio / --mamba-full-memory-ratio (default 0.8 / 0.9)")
    p.add_argument("--json", metavar="OUT", help="write the metrics here")
    p.add_argument("--reserve", type=int, default=ReplayConfig.reserve,
                   help="decode tokens of headroom per running request at admission")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = ReplayConfig(reserve=args.reserve, progress=not args.no_progress and sys.stderr.isatty())
    t0 = time.perf_counter()
    result = run(args.manager, args.model, args.kv_gib, load(args.trace), cfg, args.ratio)
    summary = {k: v for k, v in result.items() if k != "series"}
    print(json.dumps(summary, indent=1))
    print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
