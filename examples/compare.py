"""Run the same work on sglang's default memory manager and on `--memory-manager jenga`, side by side.

    python examples/compare.py [--model gemma3] [--budget-tokens 600] [--requests 8]

Both servers serve the same tiny zoo model, trained on the recall task (sglang_jenga.models.recall:
"What is in the red room?" about facts hundreds of tokens back), on the CPU, with the same KV byte
budget: `--max-total-tokens N` tokens of the default layout. The work is the frontend programs of
programs.py (multi-turn chat on a shared system prompt of facts, fork/join over that document) and
then a burst of documents, each with a question, among as many short prompts, that arrive together
and decode 80 tokens each.
The script prints both managers' answers and, per manager, the share of right answers, the KV
bytes in use at the peak, the most requests running at once and the retractions.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from programs import run_text_programs  # noqa: E402

from sglang_jenga.models import TRAINED, build  # noqa: E402
from sglang_jenga.models.recall import document_prompt, is_right, make_document  # noqa: E402
from sglang_jenga.server import Server, pinned_env, start_all, stop_all  # noqa: E402

# --sleep-on-idle: an idle sglang scheduler otherwise polls at 100% of a core, slowing the other server.
LINE = "The lighthouse keeper wrote down the weather, the ships and the birds every single evening. "
FLAGS = ("--dtype", "float32", "--random-seed", "0", "--decode-log-interval", "1", "--chunked-prefill-size", "128",
         "--sleep-on-idle")


def start_pair(model_dir: Path, budget_tokens: int) -> dict[str, Server]:
    """Default and jenga servers, one CPU core each, started side by side."""
    managers = ("default", "jenga")
    servers = [Server(model_dir, *FLAGS, "--max-total-tokens", str(budget_tokens), "--memory-manager", m,
                      env=pinned_env(core)) for core, m in enumerate(managers)]
    return dict(zip(managers, start_all(servers), strict=True))


def burst(server: Server, n: int) -> list[dict[str, Any]]:
    """n documents of 4 facts, each with a question about its first fact (~120 tokens back), among n short
    prompts, sent at once; greedy, 80 new tokens each (a document's answer is its first line)."""
    def one(k: int) -> dict[str, Any]:
        doc = make_document(random.Random(100 + k // 2), 4, (1, 2))
        value, key = doc.facts[0]
        text = document_prompt(doc.text, key) if k % 2 == 0 else f"Log {k}: " + LINE * 2
        params = {"max_new_tokens": 80, "temperature": 0.0, "ignore_eos": True}
        out = server.post("/generate", {"text": text, "sampling_params": params})
        answer = out["text"].split("\n")[0] if k % 2 == 0 else None
        return {"ids": out["output_ids"], "retractions": out["meta_info"].get("num_retractions", 0),
                "answer": answer, "right": answer is not None and is_right(answer, value)}

    with ThreadPoolExecutor(2 * n) as pool:
        return list(pool.map(one, range(2 * n)))


def peak_kv_bytes(log: str, type_bytes: dict[str, int]) -> int:
    """KV bytes in use at the busiest logged step. A manager that keeps every layer's KV for every
    token (sglang's uniform pool) logs `#token`; hybrid pools log `#full token` and `#swa token`.
    `type_bytes` are the bytes of one token of all layers of each type (read off jenga's stats)."""
    pairs = re.findall(r"#full token: (\d+), .*?#swa token: (\d+)", log)
    if pairs:
        return max(int(f) * type_bytes["full"] + int(w) * type_bytes.get("swa", 0) for f, w in pairs)
    tokens = max((int(t) for t in re.findall(r"#token: (\d+)", log)), default=0)
    return tokens * sum(type_bytes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma3", choices=TRAINED)
    parser.add_argument("--budget-tokens", type=int, default=600)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--zoo", default="out/zoo")
    args = parser.parse_args()
    model_dir = build(args.model, Path(args.zoo) / f"{args.model}-recall", trained=True)
    servers = start_pair(model_dir, args.budget_tokens)
    try:
        programs = {m: run_text_programs(s.url) for m, s in servers.items()}
        bursts = {m: burst(s, args.requests) for m, s in servers.items()}
        report(args, servers, programs, bursts)
    finally:
        stop_all(list(servers.values()))


def report(args: argparse.Namespace, servers: dict[str, Server], programs: dict, bursts: dict) -> None:
    print(f"\n== {args.model}, KV budget of {args.budget_tokens} default-layout tokens ==")
    for manager, out in programs.items():
        print(f"[{manager}] multi-turn answers: {out['multi_turn_chat'][0]}")
        print(f"[{manager}] fork/join answers:  {out['document_qa']}")
        print(f"[{manager}] burst answers:      {[r['answer'] for r in bursts[manager][0::2]]}")
    same_programs = programs["default"] == programs["jenga"]
    same_burst = [r["ids"] for r in bursts["default"]] == [r["ids"] for r in bursts["jenga"]]
    print(f"outputs identical: programs {same_programs}, burst of {2 * args.requests} requests {same_burst}")
    print(f"{'manager':8} {'right answers':>14} {'peak KV bytes':>14} {'max running':>12} {'retractions':>12}")
    types = servers["jenga"].get("/server_info")["internal_states"][0]["jenga"]["types"]
    type_bytes = {name: t["small_page_bytes"] for name, t in types.items()}
    rows = {}
    for manager, s in servers.items():
        log = s.log()
        running = max((int(n) for n in re.findall(r"#running-req: (\d+)", log)), default=0)
        rows[manager] = (peak_kv_bytes(log, type_bytes), running, sum(r["retractions"] for r in bursts[manager]))
        right = programs[manager]["right"] + [r["right"] for r in bursts[manager][0::2]]
        accuracy = f"{sum(right)}/{len(right)}"
        print(f"{manager:8} {accuracy:>14} {rows[manager][0]:>14,} {rows[manager][1]:>12} {rows[manager][2]:>12}")
    d, j = rows["default"], rows["jenga"]
    print(f"jenga / default: max running {j[1] / max(d[1], 1):.2f}x")


if __name__ == "__main__":
    main()
