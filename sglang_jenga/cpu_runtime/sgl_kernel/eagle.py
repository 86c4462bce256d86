"""Small per-request gathers and shifts of speculative decoding (EAGLE / multi-layer EAGLE)."""

from __future__ import annotations

import torch


def fill_bonus_tokens_cpu(
    accept_tokens: torch.Tensor,
    accept_lens: torch.Tensor,
    bonus_tokens: torch.Tensor,
    accept_stride: int,
) -> None:
    """Last accepted token per request: `bonus[i] = accept_tokens.flat[i * stride + accept_lens[i] - 1]`.

    Twin of sglang's Triton `fill_bonus_tokens` (kernels/ops/speculative/eagle.py).

    Args:
        accept_tokens: `[bs, accept_stride]` row-major (int32 in sglang), read only.
        accept_lens: `[bs]` int32, accepted tokens per request, bonus included (>= 1).
        bonus_tokens: `[bs]`; MUTATED (values cast to its dtype).
        accept_stride: row width of `accept_tokens` (= accept_index.shape[1]).
    """
    bs = accept_lens.numel()
    if bs == 0:
        return
    rows = torch.arange(bs, device=accept_lens.device) * accept_stride
    picked = accept_tokens.reshape(-1)[rows + accept_lens.reshape(-1).to(torch.int64) - 1]
    bonus_tokens.view(-1)[:bs] = picked.to(bonus_tokens.dtype)


def fill_accept_out_cache_loc_cpu(
    accept_index: torch.Tensor,
    out_cache_loc: torch.Tensor,
    accept_out_cache_loc: torch.Tensor,
    size: int | None = None,
) -> None:
    """Compact the KV slots of accepted tokens: `accept_out[k] = out_cache_loc[a_k]`, a_k the k-th index > -1.

    Twin of sglang's Triton `fill_accept_out_cache_loc` (kernels/ops/speculative/eagle.py).

    Args:
        accept_index: any shape, read flat (row-major), int32/int64; -1 marks a rejected slot.
        out_cache_loc: `[bs * num_draft_tokens]` int64, read only.
        accept_out_cache_loc: int64; MUTATED in its first (number of accepted) entries.
        size: how many entries of the flat `accept_index` to read; default all. sglang 0.5.23
            calls with three arguments, older sgl-kernel wrappers took `size` explicitly.
    Entries below -1 are skipped like -1 (as sgl-kernel's C++ kernel does; the Triton kernel
    would leave a hole for them). Order is preserved.
    """
    flat = accept_index.reshape(-1)
    if size is not None:
        flat = flat[:size]
    accepted = flat[flat > -1].to(torch.int64)
    accept_out_cache_loc.view(-1)[: accepted.numel()] = out_cache_loc.reshape(-1)[accepted].to(
        accept_out_cache_loc.dtype
    )


def rotate_input_ids_cpu(
    input_ids: torch.Tensor,
    extend_start_loc: torch.Tensor,
    extend_seq_lens: torch.Tensor,
    topk_index: torch.Tensor,
    select_index: torch.Tensor | None = None,
) -> None:
    """Shift each request's extend segment left by one token and append its new draft token.

    For request i with segment `s = extend_start_loc[i]`, `n = extend_seq_lens[i]`:
    `ids[s : s+n-1] = old ids[s+1 : s+n]`, then (if n > 0) `ids[p] = topk_index.flat[i]` where
    `p = select_index[i]` if given, else `s + n - 1`. Twin of sglang's Triton
    `rotate_input_ids_kernel` (kernels/ops/speculative/multi_layer_eagle.py).

    Args:
        input_ids: `[num_tokens]` int64; MUTATED in place (sglang relies on it).
        extend_start_loc, extend_seq_lens: `[bs]` int32/int64.
        topk_index: int64, read flat; element i is request i's new token (`[bs, 1]` in sglang).
        select_index: optional `[bs]` int64 global positions for the new tokens.
    Segments are assumed disjoint, as sglang lays them out: all shifts read a snapshot taken
    before any write, and the new tokens are written after all shifts.
    """
    bs = extend_seq_lens.numel()
    if bs == 0:
        return
    ids = input_ids.view(-1)
    starts = extend_start_loc.reshape(-1).to(torch.int64)
    lens = extend_seq_lens.reshape(-1).to(torch.int64)
    shift = (lens - 1).clamp(min=0)
    req = torch.repeat_interleave(torch.arange(bs, device=ids.device), shift)
    within = torch.arange(req.numel(), device=ids.device) - (torch.cumsum(shift, 0) - shift)[req]
    dst = starts[req] + within
    ids[dst] = ids[dst + 1]  # the right-hand side is gathered (copied) before the scatter
    has_token = lens > 0
    pos = select_index.reshape(-1).to(torch.int64) if select_index is not None else starts + lens - 1
    ids[pos[has_token]] = topk_index.reshape(-1)[:bs][has_token].to(ids.dtype)
