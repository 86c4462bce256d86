#!/usr/bin/env bash
# Every benchmark in one run (about 25 minutes on 2 cores): the replay comparison on
# real model shapes (table, checks, motivation figures, docs/img/*.png), the allocator microbenchmark and the
# end-to-end bench_serving comparison on CPU servers. JSON results go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SGLANG_USE_CPU_ENGINE=1 PYTHONUNBUFFERED=1
mkdir -p out
.venv/bin/python -m sglang_jenga.bench.compare --json out/compare.json
.venv/bin/python -m sglang_jenga.bench.alloc --json out/alloc.json
.venv/bin/python -m sglang_jenga.bench.serving --json out/serving.json
