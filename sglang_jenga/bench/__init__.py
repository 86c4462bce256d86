"""Benchmarks of sglang_jenga against sglang's own memory managers.

  alloc   microbenchmark of allocator and tree-cache operations (`python -m sglang_jenga.bench.alloc`)

sglang is imported only inside this package (never from `sglang_jenga.core`); on a CPU-only machine that
needs the project's CPU runtime (`sglang_jenga/cpu_runtime`, installed by scripts/setup.sh).
"""
