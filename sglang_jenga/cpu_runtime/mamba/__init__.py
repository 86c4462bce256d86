"""Plain-torch twins of the Triton kernels sglang 0.5.23 runs for Mamba2 hybrids and Qwen3-Next on CPU.

Module map:
  conv.py         causal conv1d with per-slot rolling state: varlen prefill, decode update
  ssd.py          Mamba2 SSD: chunked prefill scan (varlen, initial/final/chunk/track states), decode update
  gdn.py          gated delta net: gates, chunked prefill, recurrent decode
  elementwise.py  Qwen3-Next's gated RMSNorm and MoE shared-expert gate
  ops.py          the two `torch.ops.sgl_kernel` GDN ops sglang's CPU branch reads at import
  hooks.py        register_cpu_mamba_hooks(): the sglang names replaced on CPU (one table)

How they reach sglang: the GDN/KDA backends import `sgl_kernel.mamba` on CPU, which the stand-in
package serves (cpu_runtime/sgl_kernel/mamba.py, built on conv.py and gdn.py); everything else goes
through sglang's plugin HookRegistry via hooks.py. Each kernel keeps the argument names and return
conventions of the sglang function it stands in for; docstrings give shapes, dtypes and mutations.
"""
