#!/usr/bin/env bash
# Every benchmark in one run (about 40 minutes on 2 cores): the replay comparison on real model shapes (table,
# checks, motivation figures, docs/img/*.png), the allocator microbenchmark, one decode step's allocation warm
# and cold, the end-to-end bench_serving comparisons on CPU servers (sliding-window models, then Mamba2 hybrids
# with short requests) and the scheduler's CPU time per step in real servers. JSON results go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SGLANG_USE_CPU_ENGINE=1 PYTHONUNBUFFERED=1
mkdir -p out
.venv/bin/python -m sglang_jenga.bench.compare --json out/compare.json
.venv/bin/python -m sglang_jenga.bench.alloc --json out/alloc.json
.venv/bin/python -m sglang_jenga.bench.decode_step --json out/decode_step.json
.venv/bin/python -m sglang_jenga.bench.serving --json out/serving.json
.venv/bin/python -m sglang_jenga.bench.serving --models falcon_h1 nemotron_h --input-len 32 --output-len 48 \
    --json out/serving_mamba.json
.venv/bin/python -m sglang_jenga.bench.scheduler_cost --json out/scheduler_cost.json
