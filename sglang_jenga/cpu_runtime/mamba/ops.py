"""The two `torch.ops.sgl_kernel` GDN ops that sglang's CPU path reads at import time.

sglang 0.5.23 binds `torch.ops.sgl_kernel.fused_gdn_gating_cpu` (linear/gdn_backend.py) and
`torch.ops.sgl_kernel.fused_sigmoid_gating_delta_rule_update_cpu` (linear/kernels/gdn_triton.py) at
module level whenever `is_cpu()`, so without them importing the linear-attention backends fails
for every Mamba-ish model. They are defined here, with sgl-kernel's CPU schemas and plain-torch
kernels, only when the stand-in `sgl_kernel.mamba` is imported (so never next to a real
sgl_kernel) and only if no op of that name exists yet. No other name is added to the namespace.
"""

from __future__ import annotations

import torch

from sglang_jenga.cpu_runtime.mamba import gdn

SCHEMAS = {
    "fused_gdn_gating_cpu": "(Tensor A_log, Tensor a, Tensor b, Tensor dt_bias) -> (Tensor, Tensor)",
    "fused_sigmoid_gating_delta_rule_update_cpu": (
        "(Tensor A_log, Tensor dt_bias, Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, "
        "Tensor(a!) initial_state_source, Tensor initial_state_indices, Tensor? cu_seqlens, "
        "bool use_qk_l2norm_in_kernel, float softplus_beta=1.0, float softplus_threshold=20.0) -> Tensor"
    ),
}
_LIBRARY: list[torch.library.Library] = []  # kept alive: a collected Library drops its ops


def _fused_gdn_gating_cpu(
    A_log: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dt_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g `[1, tokens, HV]` float32, beta `[1, tokens, HV]` in b's dtype), as sgl-kernel's op."""
    g, beta = gdn.fused_gdn_gating(A_log, a, b, dt_bias)
    return g, beta.to(b.dtype)


def _fused_sigmoid_gating_delta_rule_update_cpu(
    A_log: torch.Tensor, dt_bias: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    a: torch.Tensor, b: torch.Tensor, initial_state_source: torch.Tensor,
    initial_state_indices: torch.Tensor, cu_seqlens: torch.Tensor | None,
    use_qk_l2norm_in_kernel: bool, softplus_beta: float = 1.0, softplus_threshold: float = 20.0,
) -> torch.Tensor:
    """See `gdn.fused_sigmoid_gating_delta_rule_update`; mutates `initial_state_source`."""
    return gdn.fused_sigmoid_gating_delta_rule_update(
        A_log, dt_bias, q, k, v, a, b, initial_state_source, initial_state_indices, cu_seqlens,
        use_qk_l2norm_in_kernel, softplus_beta, softplus_threshold,
    )


KERNELS = {
    "fused_gdn_gating_cpu": _fused_gdn_gating_cpu,
    "fused_sigmoid_gating_delta_rule_update_cpu": _fused_sigmoid_gating_delta_rule_update_cpu,
}


def define_sgl_kernel_ops() -> list[str]:
    """Define the ops of `SCHEMAS` that `torch.ops.sgl_kernel` lacks; returns the names defined.

    Idempotent. The kernels are registered for the CPU dispatch key only.
    """
    missing = [name for name in SCHEMAS if not hasattr(torch.ops.sgl_kernel, name)]
    if missing:
        library = torch.library.Library("sgl_kernel", "FRAGMENT")
        for name in missing:
            library.define(name + SCHEMAS[name])
            library.impl(name, KERNELS[name], "CPU")
        _LIBRARY.append(library)
    return missing
