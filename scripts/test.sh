#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole suite on CPU.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" tests/core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SGLANG_USE_CPU_ENGINE=1 PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"
