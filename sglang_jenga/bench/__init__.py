"""Benchmarks of sglang_jenga against sglang's own memory managers.

  alloc         microbenchmark of allocator and tree-cache operations (`python -m sglang_jenga.bench.alloc`)
  decode_step   one decode step's allocation through sglang's API, caches warm and cold
                (`python -m sglang_jenga.bench.decode_step`)

sglang is imported only inside this package (never from `sglang_jenga.core`); on a CPU-only machine that
needs the project's CPU runtime (`sglang_jenga/cpu_runtime`, installed by scripts/setup.sh).
"""
