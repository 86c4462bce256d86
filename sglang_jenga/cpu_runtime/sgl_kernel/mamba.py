"""`sgl_kernel.mamba`: sgl-kernel's CPU Mamba/GDN wrappers, in plain torch.

sglang 0.5.23 imports these names when `is_cpu()`: `causal_conv1d_fn_cpu` and
`causal_conv1d_update_cpu` (linear/gdn_backend.py, linear/kda_backend.py) and
`chunk_gated_delta_rule_cpu` (linear/kernels/gdn_triton.py), and right after them reads two
`torch.ops.sgl_kernel` ops, which importing this module defines (see cpu_runtime/mamba/ops.py).
Signatures are those of upstream sgl-kernel/python/sgl_kernel/mamba.py; the maths lives in
`sglang_jenga.cpu_runtime.mamba`.
"""

from __future__ import annotations

from typing import Any

import torch

from sglang_jenga.cpu_runtime.mamba import conv, gdn
from sglang_jenga.cpu_runtime.mamba.ops import define_sgl_kernel_ops

define_sgl_kernel_ops()


def causal_conv1d_fn_cpu(
    mixed_qkv_transposed: torch.Tensor,
    conv_weights: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None,
    conv_states: torch.Tensor,
    has_initial_state: torch.Tensor | None,
    cache_indices: torch.Tensor | None,
    query_start_loc: torch.Tensor | None,
    seq_lens_cpu: list[int] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Varlen prefill conv: `[dim, tokens]` in, new `[dim, tokens]` out; updates `conv_states`.

    See `conv.causal_conv1d_fn` (shapes, padding slots, what is mutated).
    """
    return conv.causal_conv1d_fn(
        mixed_qkv_transposed, conv_weights, bias, conv_states=conv_states,
        query_start_loc=query_start_loc, seq_lens_cpu=seq_lens_cpu, cache_indices=cache_indices,
        has_initial_state=has_initial_state, activation=activation, **kwargs,
    )


def causal_conv1d_update_cpu(
    mixed_qkv: torch.Tensor,
    conv_states: torch.Tensor,
    conv_weights: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None,
    conv_state_indices: torch.Tensor | None,
    **kwargs: Any,
) -> torch.Tensor:
    """Decode conv: `[batch, dim]` (or `[batch, dim, seqlen]`) in, same shape out; updates `conv_states`.

    See `conv.causal_conv1d_update`; the speculative-decoding keywords raise NotImplementedError.
    """
    return conv.causal_conv1d_update(
        mixed_qkv, conv_states, conv_weights, bias, activation,
        conv_state_indices=conv_state_indices, **kwargs,
    )


def chunk_gated_delta_rule_cpu(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor,
    cu_seqlens: torch.Tensor | None,
    head_first: bool,
    use_qk_l2norm_in_kernel: bool,
    initial_state_indices: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """GDN prefill: returns (o, final states, None) and writes the final states into
    `initial_state[initial_state_indices]` in place. See `gdn.chunk_gated_delta_rule`."""
    return gdn.chunk_gated_delta_rule(
        q, k, v, g, beta, initial_state=initial_state, initial_state_indices=initial_state_indices,
        cu_seqlens=cu_seqlens, head_first=head_first, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
    )
