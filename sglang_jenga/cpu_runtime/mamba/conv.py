"""Depthwise causal conv1d with a per-slot rolling state: varlen prefill and decode.

Twins of sglang's Triton `causal_conv1d_fn` / `causal_conv1d_update`
(sglang/kernels/ops/mamba/causal_conv1d_triton.py). Both take the Triton wrappers' keyword names,
so one function serves every sglang call site (the CUDA wrapper in
srt/layers/attention/mamba/causal_conv1d.py, the Triton one, and sgl-kernel's CPU wrappers).

Definitions. `width` = kernel width W, `state_len` = W - 1. The conv state of a slot holds the
last `state_len` inputs seen, oldest first: `conv_states[slot, :, :state_len]`. A sequence's
window is `cat(initial, x_seq)` along time, where `initial` is the slot's state if the sequence
has one and zeros otherwise; output t is `sum_j window[:, t + j] * weight[:, j] (+ bias)`, then
SiLU if asked. The new state is the window's last `state_len` columns (so a sequence shorter than
`state_len` shifts the old state left, or zeros when it had none). Maths in float32; outputs in
x's dtype, states in the state buffer's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD_SLOT_ID = -1


def _silu_flag(activation: bool | str | None) -> bool:
    if activation in (None, False):
        return False
    if activation in (True, "silu", "swish"):
        return True
    raise NotImplementedError(f"causal conv1d: activation {activation!r} (None, 'silu' or 'swish')")


def _depthwise(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool) -> torch.Tensor:
    """`[n, dim, state_len + L]` float32 windows -> `[n, dim, L]` float32 outputs."""
    dim, width = weight.shape
    b = None if bias is None else bias.float()
    out = F.conv1d(window, weight.float().view(dim, 1, width), b, groups=dim)
    return F.silu(out) if silu else out


def _seq_bounds(query_start_loc: torch.Tensor | None, seq_lens_cpu: list[int] | None, total: int) -> list[int]:
    if query_start_loc is None:
        return [0, total]
    if seq_lens_cpu is not None and len(seq_lens_cpu) == query_start_loc.numel() - 1:
        return [0, *torch.tensor(seq_lens_cpu, dtype=torch.int64).cumsum(0).tolist()]
    return [int(v) for v in query_start_loc.tolist()]


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    conv_states: torch.Tensor | None = None,
    query_start_loc: torch.Tensor | None = None,
    seq_lens_cpu: list[int] | None = None,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: bool | str | None = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    block_table: torch.Tensor | None = None,
    **_ignored: object,
) -> torch.Tensor:
    """Prefill: convolve every sequence of a varlen batch, updating each one's conv state.

    Args:
        x: `[dim, total_tokens]`, the batch's sequences back to back along dim 1 (any strides).
        weight: `[dim, width]`; bias: `[dim]` or None.
        conv_states: `[num_slots, dim, >= width - 1]` or None (then no state is read or written).
        query_start_loc: `[batch + 1]` int, sequence i is tokens `[qsl[i], qsl[i+1])`; None means
            one sequence. `seq_lens_cpu` (list of lengths) spares the device-to-host copy.
        cache_indices: `[batch]` int slot of each sequence (default: slot i); a slot equal to
            `pad_slot_id` marks a padding sequence, which is skipped (its output columns are 0).
        has_initial_state: `[batch]` bool; None means no sequence has one.
        activation: None/False, or "silu"/"swish"/True.
    Returns a new `[dim, total_tokens]` tensor in x's dtype.
    Mutates `conv_states[cache_indices[i], :, :width-1]` for every non-padding sequence i.
    Raises NotImplementedError for a `block_table` (CUDA-graph launches only).
    Cost: one depthwise conv per sequence, O(dim * (tokens + batch * width) * width).
    """
    if block_table is not None:
        raise NotImplementedError("causal_conv1d_fn: block_table launches are CUDA-graph only")
    silu = _silu_flag(activation)
    dim, width = weight.shape
    state_len = width - 1
    out = torch.zeros_like(x)
    bounds = _seq_bounds(query_start_loc, seq_lens_cpu, x.shape[1])
    slots = None if cache_indices is None else cache_indices.tolist()
    has_init = None if has_initial_state is None else has_initial_state.tolist()
    for i in range(len(bounds) - 1):
        start, end = bounds[i], bounds[i + 1]
        slot = i if slots is None else int(slots[i])
        if end <= start or slot == pad_slot_id:
            continue
        initial = torch.zeros(dim, state_len, dtype=torch.float32, device=x.device)
        if conv_states is not None and has_init is not None and has_init[i]:
            initial = conv_states[slot, :, :state_len].float()
        window = torch.cat([initial, x[:, start:end].float()], dim=1)
        out[:, start:end] = _depthwise(window[None], weight, bias, silu)[0].to(x.dtype)
        if conv_states is not None:
            conv_states[slot, :, :state_len] = window[:, -state_len:].to(conv_states.dtype)
    return out


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: bool | str | None = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
    num_accept_tokens: torch.Tensor | None = None,
    intermediate_conv_window: torch.Tensor | None = None,
    intermediate_state_indices: torch.Tensor | None = None,
    retrieve_next_token: torch.Tensor | None = None,
    retrieve_next_sibling: torch.Tensor | None = None,
    retrieve_parent_token: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
    **_ignored: object,
) -> torch.Tensor:
    """Decode: append `seqlen` new inputs to each row's conv state and convolve them.

    Args:
        x: `[batch, dim]` (one token per row) or `[batch, dim, seqlen]`.
        conv_state: `[num_slots, dim, >= width - 1]` state buffer (any strides).
        weight: `[dim, width]`; bias: `[dim]` or None; activation as in `causal_conv1d_fn`.
        conv_state_indices: `[batch]` int slot of each row (default: slot = row); rows whose
            slot equals `pad_slot_id` are skipped (output 0, state untouched).
    Returns a new tensor shaped like x, in x's dtype.
    Mutates `conv_state[slot, :, :width-1]` of every non-padding row.
    Raises NotImplementedError for the circular-buffer (`cache_seqlens`) and speculative-decoding
    arguments (`num_accept_tokens`, `intermediate_*`, `retrieve_*`), which the CPU path never uses.
    Cost: O(batch * dim * (seqlen + width) * width).
    """
    spec_args = (num_accept_tokens, intermediate_conv_window, intermediate_state_indices,
                 retrieve_next_token, retrieve_next_sibling, retrieve_parent_token)
    if cache_seqlens is not None or any(a is not None for a in spec_args):
        raise NotImplementedError("causal_conv1d_update: circular buffers / speculative decoding")
    silu = _silu_flag(activation)
    squeeze = x.dim() == 2
    x3 = x.unsqueeze(-1) if squeeze else x
    state_len = weight.shape[1] - 1
    out = torch.zeros_like(x3)
    rows = torch.arange(x3.shape[0], device=x.device)
    slots = rows if conv_state_indices is None else conv_state_indices.to(torch.int64)
    keep = slots != pad_slot_id
    rows, slots = rows[keep], slots[keep]
    if rows.numel() > 0:
        window = torch.cat([conv_state[slots, :, :state_len].float(), x3[rows].float()], dim=2)
        out[rows] = _depthwise(window, weight, bias, silu).to(x.dtype)
        conv_state[slots, :, :state_len] = window[:, :, -state_len:].to(conv_state.dtype)
    return out.squeeze(-1) if squeeze else out
