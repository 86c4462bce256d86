#!/usr/bin/env bash
# The README's main job: set up (idempotent), then a jenga server on a tiny hybrid model, a frontend
# program against it, and the side-by-side comparison with sglang's default manager.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SGLANG_USE_CPU_ENGINE=1 PYTHONUNBUFFERED=1
exec .venv/bin/python examples/demo.py "$@"
