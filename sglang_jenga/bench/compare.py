"""Jenga against sglang's own managers on the same traces: every standard (model, trace, budget) case through
`jenga`, `sglang`, `sglang-tuned` (a ratio sweep) and `uniform`, a table of ratios, plots, and the motivation
figures.

    python -m sglang_jenga.bench.compare [--quick] [--workers 2] [--img-dir docs/img] [--json OUT]

Cases (STANDARD): each model with its chat trace and, per context length, a long-context trace (30-90k-token
shared documents; 3-7k for the 8k-context Nemotron-H) or, for mllama, MMMU-like image questions. Budgets are
scaled down from an H100 deployment so that traces small enough for a ~10-minute CPU run still saturate the
memory; what matters is the ratio at an equal byte budget. Where sglang's own layout for a model already is
the uniform one (dense Llama, Gemma-3 with hybrid SWA memory disabled, mllama), `uniform` is that same run.
`uniform` has no meaning for Mamba hybrids (n/a).

`--quick` runs two small cases (dense Llama chat, Ministral long documents) with a two-ratio sweep, no
motivation replays and no plots: a smoke test of the whole pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from . import motivation
from .profiles import SHAPES, sglang_layout
from .replay import GIB, ReplayConfig, tuned_candidates
from .traces import TraceRequest, generate

TRACES: dict[str, dict[str, Any]] = {  # arrivals fast enough that requests queue: memory sets the batch size
    "chat": {"kind": "chat", "n": 600, "seed": 1, "rate": 1000.0},
    "longdoc": {"kind": "longdoc", "n": 32, "seed": 1, "rate": 50.0, "spread_s": 0.2},
    "doc8k": {"kind": "longdoc", "n": 60, "seed": 1, "rate": 100.0, "spread_s": 0.2, "min_doc": 3000,
              "max_doc": 7000},
    "mmmu": {"kind": "mmmu", "n": 120, "seed": 1, "rate": 1000.0},
    "quick-chat": {"kind": "chat", "n": 40, "seed": 1, "rate": 1000.0},
    "quick-doc": {"kind": "longdoc", "n": 4, "seed": 1, "rate": 50.0, "spread_s": 0.2, "min_doc": 36_000,
                  "max_doc": 40_000},
}


class Case(NamedTuple):
    model: str
    trace: str
    kv_gib: float
    long: bool  # a long-context trace (acceptance: jenga > sglang there)


STANDARD = [
    Case("llama-3.1-8b", "chat", 4, False), Case("llama-3.1-8b", "longdoc", 24, True),
    Case("gemma-3-27b", "chat", 16, False), Case("gemma-3-27b", "longdoc", 48, True),
    Case("gpt-oss-120b", "chat", 2, False), Case("gpt-oss-120b", "longdoc", 12, True),
    Case("llama-4-scout", "chat", 6, False), Case("llama-4-scout", "longdoc", 32, True),
    Case("ministral-8b", "chat", 6, False), Case("ministral-8b", "longdoc", 32, True),
    Case("mllama-11b", "chat", 5, False), Case("mllama-11b", "mmmu", 8, True),
    Case("qwen3-next-80b-a3b", "chat", 10, False), Case("qwen3-next-80b-a3b", "longdoc", 24, True),
    Case("nemotron-h-8b", "chat", 12, False), Case("nemotron-h-8b", "doc8k", 12, True),
]
QUICK = [Case("llama-3.1-8b", "quick-chat", 1, False), Case("ministral-8b", "quick-doc", 8, True)]
QUICK_RATIOS = (0.45, 1.0)


class Job(NamedTuple):
    case: Case
    manager: str  # jenga, sglang, uniform, or "sweep" (one sglang-tuned candidate)
    ratio: float | None
    forced: bool


_TRACE_CACHE: dict[str, list[TraceRequest]] = {}
MOTIVATION_PREFIX = "motivation:"


def trace_of(name: str) -> list[TraceRequest]:
    """The trace of a TRACES entry, or of a motivation case ("motivation:<model>")."""
    if name not in _TRACE_CACHE:
        if name.startswith(MOTIVATION_PREFIX):
            spec = next(c[3] for c in motivation.CASES if c[0] == name[len(MOTIVATION_PREFIX):])
            _TRACE_CACHE[name] = motivation.trace_for(spec)
        else:
            spec = dict(TRACES[name])
            _TRACE_CACHE[name] = generate(spec.pop("kind"), spec.pop("n"), spec.pop("seed"), **spec)
    return _TRACE_CACHE[name]


def motivation_jobs() -> list[Job]:
    """uniform and jenga on each motivation case."""
    return [Job(Case(model, MOTIVATION_PREFIX + model, gib, True), m, None, False)
            for model, _, gib, _ in motivation.CASES for m in ("uniform", "jenga")]


def jobs_for(case: Case, quick: bool) -> list[Job]:
    """The replays one case needs; sweep candidates equal to sglang's default are not repeated."""
    model = SHAPES[case.model]
    jobs = [Job(case, "jenga", None, False), Job(case, "sglang", None, False)]
    layout = sglang_layout(model)
    if layout.kind in ("swa",):
        jobs.append(Job(case, "uniform", None, False))
    default = 0.8 if layout.kind == "swa" else 0.9 if layout.kind == "mamba" else None
    for ratio, forced in tuned_candidates(case.model):
        if quick and ratio is not None and ratio not in QUICK_RATIOS:
            continue
        if (ratio, forced) != (default, False):
            jobs.append(Job(case, "sweep", ratio, forced))
    return jobs


def run_job(job: Job) -> tuple[Job, dict[str, Any] | None, float]:
    """Replay one job (in a worker process); None when the configuration cannot be built (ValueError)."""
    from .replay import make_manager, replay

    t0 = time.perf_counter()
    trace = trace_of(job.case.trace)
    name = "sglang" if job.manager == "sweep" else job.manager
    try:
        manager = make_manager(name, job.case.model, job.case.kv_gib, trace, ratio=job.ratio,
                               force_hybrid_swa=job.forced)
    except ValueError:
        return job, None, time.perf_counter() - t0
    return job, replay(manager, trace, ReplayConfig()), time.perf_counter() - t0


def _init_worker() -> None:
    from .sgl_build import init_sglang

    init_sglang()


def execute(jobs: list[Job], workers: int) -> list[tuple[Job, dict[str, Any] | None, float]]:
    """Run the jobs, longest first, in `workers` processes (each imports sglang once)."""
    order = sorted(jobs, key=_cost, reverse=True)
    if workers <= 1:
        _init_worker()
        return [run_job(j) for j in order]
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        return list(pool.map(run_job, order))


def _cost(job: Job) -> float:
    """Rough relative cost, to start the long replays first."""
    tokens = sum(r.prompt_len + r.image_tokens for r in trace_of(job.case.trace))
    return tokens * (4.0 if job.manager == "jenga" else 1.0)


# ------------------------------------------------------------------------------------------------ assembly
def assemble(results: Iterable[tuple[Job, dict[str, Any] | None, float]]) -> list[dict[str, Any]]:
    """One row per case: the managers' results, sglang-tuned as the best sweep candidate (or the default)."""
    by_case: dict[Case, dict[str, Any]] = {}
    for job, res, secs in results:
        row = by_case.setdefault(job.case, {"case": job.case, "sweep": {}, "seconds": 0.0})
        row["seconds"] += secs
        if job.manager == "sweep":
            label = ("swa:" if job.forced else "") + ("default" if job.ratio is None else str(job.ratio))
            row["sweep"][label] = res
        else:
            row[job.manager] = res
    rows = []
    for case in sorted(by_case, key=lambda c: (c.model, c.long)):
        row = by_case[case]
        sg = row["sglang"]
        default_label = str(sg["pool"]["ratio"]) if sg["pool"]["ratio"] is not None else "default"
        cands = {default_label: sg} | {k: v for k, v in row["sweep"].items() if v is not None}
        best = max(cands, key=lambda k: (cands[k]["mean_running"], cands[k]["tokens_per_step"]))
        row["sglang-tuned"] = cands[best] | {"manager": "sglang-tuned", "tuned": best}
        row["sweep_running"] = {k: v["mean_running"] for k, v in cands.items()}
        if "uniform" not in row:
            row["uniform"] = sg if sglang_layout(SHAPES[case.model]).kind == "full" else None
        rows.append(row)
    return rows


def _ratio(a: float, b: float | None) -> str:
    return "-" if not b else f"{a / b:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: mean running requests per manager, jenga's ratio to each baseline, the same while requests
    queue, waste, prefix hits and retractions."""
    head = ("| model | trace | GiB | mean running: jenga / sglang / sglang-tuned (ratio) / uniform | "
            "jenga / sglang, / tuned, / uniform | while queued: jenga / sglang / tuned | "
            "waste: jenga / sglang / uniform | hits: jenga / sglang | retractions: jenga / sglang |")
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        c, j, s, t, u = row["case"], row["jenga"], row["sglang"], row["sglang-tuned"], row["uniform"]
        u_run = u["mean_running"] if u else None
        running = (f"{j['mean_running']:.2f} / {s['mean_running']:.2f} / {t['mean_running']:.2f} ({t['tuned']}) / "
                   + (f"{u_run:.2f}" if u else "n/a"))
        ratios = " / ".join(_ratio(j["mean_running"], b) for b in (s["mean_running"], t["mean_running"], u_run))
        queued = " / ".join(f"{r['mean_running_queued']:.1f}" if r["queued_steps"] else "-" for r in (j, s, t))
        waste = " / ".join(f"{r['waste_fraction']:.1%}" if r else "n/a" for r in (j, s, u))
        lines.append(f"| {c.model} | {c.trace} | {c.kv_gib:g} | {running} | {ratios} | {queued} | {waste} | "
                     f"{j['hit_rate']:.0%} / {s['hit_rate']:.0%} | {j['retractions']} / {s['retractions']} |")
    return "\n".join(lines)


def acceptance(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's acceptance targets, each with PASS/FAIL and the numbers."""
    out = []
    for row in rows:
        c, j, s, t = row["case"], row["jenga"]["mean_running"], row["sglang"]["mean_running"], \
            row["sglang-tuned"]["mean_running"]
        hybrid = len(SHAPES[c.model].groups) > 1
        if not hybrid:
            ok = abs(j - s) <= 0.01 * s
            out.append(f"{'PASS' if ok else 'FAIL'} {c.model}/{c.trace}: dense model, jenga {j:.2f} within 1% "
                       f"of sglang {s:.2f}")
            continue
        ok_t = j >= t
        out.append(f"{'PASS' if ok_t else 'FAIL'} {c.model}/{c.trace}: jenga {j:.2f} >= sglang-tuned {t:.2f}")
        if c.long:
            ok_s = j > s
            out.append(f"{'PASS' if ok_s else 'FAIL'} {c.model}/{c.trace}: jenga {j:.2f} > sglang {s:.2f}")
    return out


# ---------------------------------------------------------------------------------------------------- plots
COLORS = {"jenga": "#2ca02c", "sglang": "#1f77b4", "sglang-tuned": "#9467bd", "uniform": "#d62728"}


def plot_model(model: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Running requests and wasted fraction over time, one column per trace of `model`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["case"].model == model]
    fig, axes = plt.subplots(2, len(mine), figsize=(5.2 * len(mine), 5.4), squeeze=False)
    for col, row in enumerate(mine):
        for name, color in COLORS.items():
            res = row.get(name)
            if not res or (name == "uniform" and res is row["sglang"]):
                continue
            label = name + (f" ({res['tuned']})" if name == "sglang-tuned" else "")
            ser = res["series"]
            axes[0][col].plot(ser["step"], ser["running"], color=color, lw=1, label=label)
            axes[1][col].plot(ser["step"], [w / GIB for w in ser["wasted_bytes"]], color=color, lw=1, label=label)
        c = row["case"]
        axes[0][col].set_title(f"{model}, {c.trace}, {c.kv_gib:g} GiB", fontsize=9)
        axes[0][col].set_ylabel("running requests")
        axes[1][col].set_ylabel("wasted KV memory (GiB)")
        axes[1][col].set_xlabel("scheduler step")
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Jenga vs sglang's managers on the standard traces.")
    p.add_argument("--quick", action="store_true", help="two small cases, no plots (under a minute)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 2; --quick: 1)")
    p.add_argument("--img-dir", default="docs/img", help="where the PNG plots go")
    p.add_argument("--json", default=None, help="write all results (with time series) here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cases = QUICK if args.quick else STANDARD
    jobs = [j for c in cases for j in jobs_for(c, args.quick)]
    extra = [] if args.quick else motivation_jobs()
    results = execute(jobs + extra, args.workers or (1 if args.quick else 2))
    motiv = [r for r in results if r[0].case.trace.startswith(MOTIVATION_PREFIX)]
    rows = assemble(r for r in results if not r[0].case.trace.startswith(MOTIVATION_PREFIX))
    print(table(rows))
    print("\n".join(acceptance(rows)))
    motivation_rows = None
    if not args.quick:
        motivation_rows = motivation.rows_from({(j.case.model, j.manager): res["waste_fraction"]
                                                for j, res, _ in motiv if res is not None})
        print(motivation.table(motivation_rows))
        img = Path(args.img_dir)
        img.mkdir(parents=True, exist_ok=True)
        for model in dict.fromkeys(r["case"].model for r in rows):
            plot_model(model, rows, img / f"compare_{model}.png")
        motivation.plot(motivation_rows, str(img / "motivation_waste.png"))
    if args.json:
        dump = [{k: (v._asdict() if k == "case" else v) for k, v in r.items()} for r in rows]
        with open(args.json, "w") as f:
            json.dump({"rows": dump, "motivation": motivation_rows}, f)
    print(f"{len(jobs) + len(extra)} replays in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
