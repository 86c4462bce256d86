"""sglang on the CPU engine, with the global server args its pools read, before any adapter test imports it."""

from sglang_jenga.bench.sgl_build import init_sglang

init_sglang()
