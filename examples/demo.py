"""The main job: a jenga server on an embedded tiny hybrid model, a frontend program, the comparison.

    bash scripts/demo.sh            (set-up, then this script)

1. Writes the tiny Gemma-3-style model (5 sliding-window layers : 1 full layer, window 32) of the
   model zoo with its recall-trained weights to out/zoo/gemma3-recall.
2. Starts `python -m sglang.launch_server --memory-manager jenga` on it (CPU, torch_native
   attention) and prints jenga's start-up plan.
3. Runs the sglang frontend programs of programs.py against it (multi-turn chat sharing a system
   prompt of facts, fork/join questions over that document), prints the questions, answers and
   whether each is right, and jenga's live stats.
4. Runs compare.py: the same work on sglang's default manager and on jenga, side by side.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
from programs import CONVERSATIONS, DOCUMENT, QUESTIONS, run_text_programs  # noqa: E402

from sglang_jenga.models import build  # noqa: E402
from sglang_jenga.models.recall import question  # noqa: E402
from sglang_jenga.server import Server  # noqa: E402

MODEL = "gemma3"


def serve_and_run(model_dir: Path) -> None:
    server = Server(model_dir, *compare.FLAGS, "--max-total-tokens", "4096", "--memory-manager", "jenga")
    print("$", " ".join(server.cmd[1:]), flush=True)
    with server:
        plan = re.search(r"Jenga plan: .*", server.log())
        print(plan.group(0) if plan else "(no plan line in the log)")
        outputs = run_text_programs(server.url)
        print(f"\nthe document ({len(DOCUMENT.facts)} facts among other sentences), the system prompt of the chats:")
        print("  ", DOCUMENT.text[:300] + " ...")
        right = iter(outputs["right"])
        print("multi-turn chat (3 conversations sharing that system prompt):")
        for keys, turns in zip(CONVERSATIONS, outputs["multi_turn_chat"], strict=True):
            for key, text in zip(keys, turns, strict=True):
                print(f"   USER: {question(key):32} ASSISTANT:{text:18} {'right' if next(right) else 'WRONG'}")
        print("fork/join over the document:")
        for key, text in zip(QUESTIONS, outputs["document_qa"], strict=True):
            print(f"   Question: {question(key):28} Answer:{text:18} {'right' if next(right) else 'WRONG'}")
        print(f"right answers: {sum(outputs['right'])}/{len(outputs['right'])}")
        stats = server.get("/server_info")["internal_states"][0]["jenga"]
        print("\njenga stats after the programs:")
        print(json.dumps({k: v for k, v in stats.items() if k != "types"}))
        for name, t in stats["types"].items():
            print(f"  {name}: {t['pages_used']} pages used ({t['pages_cached']} cached in the radix tree), "
                  f"{t['pages_free']} free, {t['small_page_bytes']} B per page, "
                  f"{t['pages_per_large_page']} per large page")


def main() -> None:
    model_dir = build(MODEL, Path("out/zoo") / f"{MODEL}-recall", trained=True)
    print(f"== 1. tiny model written to {model_dir}")
    print("== 2-3. jenga server + frontend programs")
    serve_and_run(model_dir)
    print("\n== 4. comparison with sglang's default manager (python examples/compare.py)")
    sys.argv = [sys.argv[0], "--model", MODEL]
    compare.main()


if __name__ == "__main__":
    main()
