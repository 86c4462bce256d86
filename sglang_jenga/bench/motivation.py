"""The Jenga paper's motivation numbers with the `uniform` manager: memory a one-page-per-token-for-all-layers
layout wastes, against Jenga, on the paper's three cases.

  mllama-11b on MMMU-Pro-like questions (one 6404-token image, ~40 text tokens): paper 79.6 %
  ministral-8b on 128k-token documents (its maximum context):                     paper 56.25 %
  gemma-2-9b on 8k-token documents (its maximum context):                          paper 25 %

Each case replays a small trace through `uniform` and `jenga` (replay.py; waste_fraction as defined there).
The expected uniform figures follow from the layer counts: mllama (32 I + 8 T) / (40 (I + T)) for I encoder and
T text tokens (I = 6404, T = 36: 79.66 %); Ministral 27/36 * (L - 32768) / L (L = 131072: 56.25 %); Gemma-2
21/42 * (L - 4096) / L (L = 8192: 25 %). Documents of the traces sit slightly below the maximum context (the
prompt plus the answer must fit), so the measured values are a little lower.

    python -m sglang_jenga.bench.motivation [--png docs/img/motivation_waste.png]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .replay import ReplayConfig, run
from .traces import TraceRequest, generate

PAPER = {"mllama-11b": 0.796, "ministral-8b": 0.5625, "gemma-2-9b": 0.25}


CASES: list[tuple[str, str, float, dict[str, Any]]] = [  # model, label, kv_gib, trace spec (traces.generate)
    ("mllama-11b", "MMMU-like, 1 image", 16.0, {"kind": "mmmu", "n": 24, "seed": 7, "rate": 50.0}),
    ("ministral-8b", "128k documents", 40.0, {"kind": "longdoc", "n": 2, "seed": 7, "rate": 0.01,
                                               "min_doc": 130_000, "max_doc": 130_000, "answer_mean": 60.0}),
    ("gemma-2-9b", "8k documents", 8.0, {"kind": "longdoc", "n": 8, "seed": 7, "rate": 0.05,
                                          "min_doc": 7_900, "max_doc": 7_900, "answer_mean": 60.0}),
]


def trace_for(spec: dict[str, Any]) -> list[TraceRequest]:
    """The trace a spec names (generate(kind, n, seed, **rest))."""
    rest = dict(spec)
    return generate(rest.pop("kind"), rest.pop("n"), rest.pop("seed"), **rest)


def rows_from(waste: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    """Table rows from {(model, manager): waste_fraction}."""
    return [{"model": model, "case": label, "paper": PAPER[model], "uniform": waste[model, "uniform"],
             "jenga": waste[model, "jenga"]} for model, label, _, _ in CASES]


def measure(cfg: ReplayConfig | None = None) -> list[dict[str, Any]]:
    """Waste fraction of `uniform` and `jenga` on each case (in this process)."""
    cfg = cfg or ReplayConfig()
    waste = {}
    for model, _, gib, spec in CASES:
        trace = trace_for(spec)
        for manager in ("uniform", "jenga"):
            waste[model, manager] = run(manager, model, gib, trace, cfg)["waste_fraction"]
    return rows_from(waste)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | case | paper (uniform) | uniform | jenga |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['case']} | {r['paper']:.2%} | {r['uniform']:.2%} | {r['jenga']:.2%} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = range(len(rows))
    w = 0.27
    for k, (key, color) in enumerate((("paper", "#bbbbbb"), ("uniform", "#d62728"), ("jenga", "#2ca02c"))):
        vals = [100 * r[key] for r in rows]
        bars = ax.bar([x + (k - 1) * w for x in xs], vals, w, label=key if key != "paper" else "paper (uniform)",
                      color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(xs), [f"{r['model']}\n{r['case']}" for r in rows], fontsize=8)
    ax.set_ylabel("wasted KV memory (%)")
    ax.set_title("Memory one page per token for all layers wastes (motivation)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Uniform-paging waste on the Jenga paper's motivation cases.")
    p.add_argument("--png", default=None, help="write a bar chart here")
    args = p.parse_args(argv)
    rows = measure()
    print(table(rows))
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
