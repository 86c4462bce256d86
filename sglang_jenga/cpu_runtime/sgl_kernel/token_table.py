"""Reads and writes of the request-to-token table (`req_to_token`, one row of KV slots per request).

All tables are dense and row-major; a request's row starts at `req_pool_indices[i] * pool_len` of
the flattened table, exactly as in sglang's Triton kernels and sgl-kernel's CPU kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Segments(NamedTuple):
    """One entry per element of the ragged ranges `[start[i], end[i])`, in request order.

    `req`: batch row of the element; `col`: its column in that request's table row;
    `packed`: its position in the vector that holds all ranges back to back.
    """

    req: torch.Tensor
    col: torch.Tensor
    packed: torch.Tensor


def ragged_segments(start: torch.Tensor, end: torch.Tensor) -> Segments:
    """Expand per-request ranges `[start[i], end[i])` into flat int64 index vectors.

    Packed offsets are the exclusive prefix sum of `end - start` taken as is (what the Triton and
    C++ kernels do); a range with `end <= start` holds no element. Example: start=[2, 0, 5],
    end=[4, 0, 6] -> req=[0, 0, 2], col=[2, 3, 5], packed=[0, 1, 2]. Cost: O(bs + elements).
    """
    start = start.reshape(-1).to(torch.int64)
    lens = end.reshape(-1).to(torch.int64) - start
    packed_start = torch.cumsum(lens, 0) - lens
    counts = lens.clamp(min=0)
    req = torch.repeat_interleave(torch.arange(start.numel(), device=start.device), counts)
    run_start = torch.cumsum(counts, 0) - counts
    within = torch.arange(req.numel(), device=start.device) - run_start[req]
    return Segments(req, start[req] + within, packed_start[req] + within)


def _flat_slots(req_pool_indices: torch.Tensor, seg: Segments, pool_len: int) -> torch.Tensor:
    return req_pool_indices.reshape(-1).to(torch.int64)[seg.req] * pool_len + seg.col


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """Scatter new KV slots into the table: `req_to_token[rpi[i], start[i]:end[i]] = packed range i`.

    Twin of sglang's Triton `assign_req_to_token_pool` (srt/mem_cache/allocation.py).

    Args:
        req_pool_indices: `[bs]` int32/int64, table row of each request.
        req_to_token: `[max_reqs, pool_len]` contiguous (int32 in sglang); MUTATED.
        start_offset, end_offset: `[bs]` int32/int64 column ranges.
        out_cache_loc: `[sum(end - start)]` int64, the ranges back to back in request order.
        pool_len: row length of `req_to_token`.
    Only `req_to_token` is written (values cast to its dtype). Cost: one gather + one scatter.
    """
    seg = ragged_segments(start_offset, end_offset)
    values = out_cache_loc.reshape(-1)[seg.packed].to(req_to_token.dtype)
    req_to_token.view(-1)[_flat_slots(req_pool_indices, seg, pool_len)] = values


def assign_extend_cache_locs_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """Gather table ranges back to back: `out_cache_loc[packed i] = req_to_token[rpi[i], start[i]:end[i]]`.

    Twin of sglang's Triton `assign_extend_cache_locs` (kernels/ops/speculative/cache_locs.py);
    the inverse of `assign_req_to_token_pool_cpu`.

    Args:
        req_pool_indices: `[bs]` int32/int64; req_to_token: `[rows, pool_len]` contiguous, read only;
        start_offset, end_offset: `[bs]` int32/int64;
        out_cache_loc: `[>= sum(end - start)]` (int64 in sglang); MUTATED in its first
            `sum(end - start)` entries, the rest untouched.
    """
    seg = ragged_segments(start_offset, end_offset)
    values = req_to_token.reshape(-1)[_flat_slots(req_pool_indices, seg, pool_len)]
    out_cache_loc.view(-1)[seg.packed] = values.to(out_cache_loc.dtype)


def assign_draft_cache_locs_contiguous_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    seq_lens: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
    topk: int,
    num_steps: int,
) -> None:
    """Read back each request's `topk * num_steps` draft slots that follow its committed prefix.

    `out_cache_loc[i * w : (i + 1) * w] = req_to_token[rpi[i], seq_lens[i] : seq_lens[i] + w]`
    with `w = topk * num_steps`. Twin of sglang's Triton `assign_draft_cache_locs_contiguous`
    without its optional positions output (sglang asserts none is asked for on CPU).

    Args:
        req_pool_indices, seq_lens: `[bs]` int32/int64; req_to_token: `[rows, pool_len]`, read only;
        out_cache_loc: `[bs * topk * num_steps]` (int64 in sglang); MUTATED.
    """
    width = topk * num_steps
    bs = req_pool_indices.numel()
    if bs == 0 or width == 0:
        return
    row_start = req_pool_indices.reshape(-1).to(torch.int64) * pool_len + seq_lens.reshape(-1).to(torch.int64)
    slots = row_start[:, None] + torch.arange(width, device=row_start.device)
    out_cache_loc.view(-1)[: bs * width] = req_to_token.reshape(-1)[slots.reshape(-1)].to(out_cache_loc.dtype)
