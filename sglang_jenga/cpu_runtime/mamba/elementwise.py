"""Two small fused elementwise ops of Qwen3-Next's CPU path, in plain torch.

Twins of FLA's `rms_norm_gated` (kernels/ops/attention/fla/fused_norm_gate.py; the GDN output norm)
and of the launcher behind `fused_gate_sigmoid_mul(_add)` (kernels/ops/elementwise/elementwise.py;
the shared-expert gate of Qwen2/3 MoE blocks). sglang reaches both Triton kernels on a CPU without
AMX. Maths in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm_gated(
    x: torch.Tensor,
    g: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    activation: str = "swish",
    residual: torch.Tensor | None = None,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Gated RMSNorm over the last dim (FLA's `rms_norm_gated`, the GDN output norm).

    `h = x (+ residual)`; `y = h / sqrt(mean(h^2) + eps) * weight (+ bias)`, then
    `y *= g * sigmoid(g)` for "swish"/"silu" or `y *= sigmoid(g)` for "sigmoid". x and g have the
    same shape `[..., D]`; weight and bias `[D]` or None. Like FLA's kernel, writes y over x and
    returns x, or with `prenorm` (x, h) where h is float32 if `residual_in_fp32` else x's dtype.
    Mutates x only.
    """
    h = x.to(torch.float32, copy=True) if residual is None else x.float() + residual.float()
    y = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    gate = g.float()
    if activation in ("swish", "silu"):
        y = y * F.silu(gate)
    elif activation == "sigmoid":
        y = y * torch.sigmoid(gate)
    else:
        raise ValueError(f"rms_norm_gated: unsupported activation {activation!r}")
    out = x.copy_(y)
    return out if not prenorm else (out, h.to(torch.float32 if residual_in_fp32 else x.dtype))


def launch_fused_gate_sigmoid_mul(
    hidden_states: torch.Tensor,
    gate_weight: torch.Tensor,
    shared_output: torch.Tensor,
    output: torch.Tensor,
    *,
    do_add: bool,
) -> None:
    """`output = sigmoid(hidden_states @ gate_weight) * shared_output (+ output if do_add)`.

    hidden_states, shared_output, output: `[tokens, D]`; gate_weight `[D]` (one scalar gate per
    token). Mutates `output` only (written in its dtype).
    """
    gate = torch.sigmoid(hidden_states.float() @ gate_weight.float())[:, None]
    result = gate * shared_output.float()
    if do_add:
        result = result + output.float()
    output.copy_(result.to(output.dtype))
