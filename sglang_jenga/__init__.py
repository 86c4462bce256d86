"""sglang_jenga: the Jenga memory manager (SOSP'25) as an SGLang plugin.

Layers, from the bottom up (no module imports a layer above its own):
  core/         engine-agnostic: layer-type specs, LCM layout, two-level allocator, typed radix tree, evictor
  adapter/      the only code that touches sglang internals (sglang names live in adapter/compat.py)
  plugin.py     the sglang entry point: adds --memory-manager and wires the adapter in
  cpu_runtime/  lets unmodified sglang import and serve on a CPU-only machine
  models/       tiny model zoo for tests and examples
  bench/        benchmarks against sglang's own managers
"""

__version__ = "0.1.0"
