"""Request-aware placement in a real server: tiny gemma3 and mellum under `--memory-manager jenga`, once with
each request its own placement owner (the default) and once with one shared owner
(SGLANG_JENGA_PLACEMENT=shared), side by side.

The workload shifts from a few long prompts to many short ones and back; the two types' shares of the
pool differ between the phases (the tree keeps a long prompt's full-attention pages and, for a later hit, the
sliding-window pages of its window and of the branch points it passed). `/server_info` must show large
pages moving between the types, and the bytes wasted in free small pages inside carved large pages must stay
under 1% of the pool whenever the burst of a phase has drained (the pool then holds the cached prompts and
nothing else). The figures of both placements are printed; both servers must
produce the same tokens (placement never changes what is computed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from serverkit import JENGA, Pair, assert_all_free, flush, greedy_many, jenga_stats, on_all, server

from sglang_jenga.server import start_all, stop_all

pytestmark = pytest.mark.slow

BUDGET_TOKENS = 3000
LINE = "The harbour master counted the boats, the nets and the gulls at dawn and again at dusk. "
PHASES = {
    "long": [f"Report {k}: " + LINE * 12 for k in range(6)],
    "short": [f"Note {k}: the tide was {k} feet." for k in range(32)],
    "long again": [f"Review {k}: " + LINE * 12 for k in range(6)],
}
# new tokens per request in each phase: the short requests' decodes are what the tree keeps of that phase
NEW_TOKENS = {"long": 8, "short": 24, "long again": 8}


@pytest.fixture(scope="module", params=["gemma3", "mellum"])
def pair(request: pytest.FixtureRequest, zoo) -> Iterator[Pair]:  # noqa: ANN001
    """(request-aware placement, one shared owner), both jenga."""
    servers = Pair(server(zoo(request.param), *JENGA, max_total_tokens=BUDGET_TOKENS, core=0),
                   server(zoo(request.param), *JENGA, max_total_tokens=BUDGET_TOKENS, core=1,
                          env={"SGLANG_JENGA_PLACEMENT": "shared"}))
    start_all(list(servers))
    try:
        yield servers
    finally:
        stop_all(list(servers))


def _waste(stats: dict[str, Any]) -> float:
    """Bytes of free small pages inside carved large pages / pool bytes."""
    free_in_carved = sum(t["pages_free_in_carved"] * t["small_page_bytes"] for t in stats["types"].values())
    return free_in_carved / stats["bytes_total"]


def _carved(stats: dict[str, Any]) -> dict[str, int]:
    return {name: t["large_pages_carved"] for name, t in stats["types"].items()}


def _run(s: Any) -> dict[str, Any]:
    """Every phase on server `s`; stats sampled while it runs and once it has drained."""
    out: dict[str, Any] = {"ids": [], "busy": [], "drained": [], "carved": []}
    for phase, prompts in PHASES.items():
        done = threading.Event()
        busy: list[float] = []

        def sample(done: threading.Event = done, busy: list[float] = busy) -> None:
            while not done.wait(0.3):
                busy.append(_waste(jenga_stats(s)))

        poller = threading.Thread(target=sample)
        poller.start()
        try:
            results = greedy_many(s, prompts, NEW_TOKENS[phase])
        finally:
            done.set()
            poller.join()
        time.sleep(0.5)
        stats = jenga_stats(s)
        out["ids"].append([r["ids"] for r in results])
        out["busy"].append(max(busy, default=0.0))
        out["drained"].append(_waste(stats))
        out["carved"].append(_carved(stats))
        out["large_pages_total"] = stats["large_pages_total"]
    return out


@pytest.fixture(scope="module")
def runs(pair: Pair) -> list[dict[str, Any]]:
    return on_all(pair, _run)


def test_large_pages_move_between_types(runs: list[dict[str, Any]]) -> None:
    carved = runs[0]["carved"]
    print("\nlarge pages carved per type after each phase (request-aware):",
          dict(zip(PHASES, carved, strict=True)))
    full, total = [c["full"] for c in carved], runs[0]["large_pages_total"]
    # the full-attention type gains (or gives back) at least 2% of the pool's large pages at each shift
    assert abs(full[1] - full[0]) > 0.02 * total and abs(full[2] - full[1]) > 0.02 * total, (full, total)


def test_waste_stays_under_one_percent_of_the_pool(runs: list[dict[str, Any]], pair: Pair) -> None:
    for label, run in zip(("request-aware placement", "one shared owner"), runs, strict=True):
        print(f"\n{label}: wasted bytes / pool after each phase drained "
              + ", ".join(f"{p} {w:.3%}" for p, w in zip(PHASES, run["drained"], strict=True))
              + "; most while running " + ", ".join(f"{w:.3%}" for w in run["busy"]))
    assert max(runs[0]["drained"]) < 0.01


def test_placement_does_not_change_the_tokens(runs: list[dict[str, Any]]) -> None:
    assert runs[0]["ids"] == runs[1]["ids"]


def test_flush_leaves_every_page_free(pair: Pair, runs: list[dict[str, Any]]) -> None:
    for s in pair:
        flush(s)
        assert_all_free(jenga_stats(s))
