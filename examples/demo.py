"""The main job: a jenga server on an embedded tiny hybrid model, a frontend program, the comparison.

    bash scripts/demo.sh            (set-up, then this script)

1. Writes the tiny Gemma-3-style model (5 sliding-window layers : 1 full layer, random weights)
   of the model zoo to out/zoo/gemma3.
2. Starts `python -m sglang.launch_server --memory-manager jenga` on it (CPU, torch_native
   attention) and prints jenga's start-up plan.
3. Runs the sglang frontend programs of programs.py against it (multi-turn chat sharing a system
   prompt, fork/join questions over one document) and prints their outputs and jenga's live stats.
4. Runs compare.py: the same work on sglang's default manager and on jenga, side by side.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
from programs import run_text_programs  # noqa: E402

from sglang_jenga.models import build  # noqa: E402
from sglang_jenga.server import Server  # noqa: E402

MODEL = "gemma3"


def serve_and_run(model_dir: Path) -> None:
    server = Server(model_dir, *compare.FLAGS, "--max-total-tokens", "4096", "--memory-manager", "jenga",
                    env=compare.ENV)
    print("$", " ".join(server.cmd[1:]), flush=True)
    with server:
        plan = re.search(r"Jenga plan: .*", server.log())
        print(plan.group(0) if plan else "(no plan line in the log)")
        outputs = run_text_programs(server.url)
        print("\n(random weights: the text is noise; step 4 checks that both managers produce the same tokens)")
        print("multi-turn chat (3 conversations sharing a system prompt):")
        for turns in outputs["multi_turn_chat"]:
            print("  ", [t.strip() for t in turns])
        print("fork/join over one document:", [a.strip() for a in outputs["document_qa"]["answers"]])
        stats = server.get("/server_info")["internal_states"][0]["jenga"]
        print("\njenga stats after the programs:")
        print(json.dumps({k: v for k, v in stats.items() if k != "types"}))
        for name, t in stats["types"].items():
            print(f"  {name}: {t['pages_used']} pages used ({t['pages_cached']} cached in the radix tree), "
                  f"{t['pages_free']} free, {t['small_page_bytes']} B per page, "
                  f"{t['pages_per_large_page']} per large page")


def main() -> None:
    model_dir = build(MODEL, Path("out/zoo") / MODEL)
    print(f"== 1. tiny model written to {model_dir}")
    print("== 2-3. jenga server + frontend programs")
    serve_and_run(model_dir)
    print("\n== 4. comparison with sglang's default manager (python examples/compare.py)")
    sys.argv = [sys.argv[0], "--model", MODEL]
    compare.main()


if __name__ == "__main__":
    main()
