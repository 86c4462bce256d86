"""CLI: `python -m sglang_jenga.models {NAME|all} OUTDIR [--trained]` writes model directories (`--trained`: with
the recall-trained weights, for the models in TRAINED); `--list` names them."""

from __future__ import annotations

import argparse
import sys

from sglang_jenga.models import NAMES, TRAINED, build, build_all, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang_jenga.models", description=__doc__)
    parser.add_argument("--list", action="store_true", help="print the model names with a description")
    parser.add_argument("name", nargs="?", choices=(*NAMES, "all"), help="model to write, or 'all'")
    parser.add_argument("outdir", nargs="?", help="output directory (for 'all': one subdirectory per model)")
    parser.add_argument("--trained", action="store_true",
                        help=f"write the recall-trained weights too (models: {', '.join(TRAINED)})")
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, NAMES))
        for name in NAMES:
            print(f"{name:<{width}}  {describe(name)}{'  [trained weights]' if name in TRAINED else ''}")
        return 0
    if args.name is None or args.outdir is None:
        parser.error("NAME and OUTDIR are required (or --list)")
    if args.name == "all" and args.trained:
        parser.error("--trained writes one model (NAME, not 'all')")
    paths = build_all(args.outdir) if args.name == "all" else [build(args.name, args.outdir, args.trained)]
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
