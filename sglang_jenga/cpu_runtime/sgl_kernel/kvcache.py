"""KV-cache slot moves addressed by raw buffer pointers."""

from __future__ import annotations

import ctypes

import torch


def _row_view(address: int, row_bytes: int, num_rows: int) -> torch.Tensor:
    """A writable `[num_rows, row_bytes]` uint8 view of memory this process owns at `address`.

    No copy: ctypes maps the address range and `torch.frombuffer` shares it. The caller vouches
    that `num_rows * row_bytes` bytes from `address` belong to one live allocation.
    """
    raw = (ctypes.c_uint8 * (num_rows * row_bytes)).from_address(address)
    return torch.frombuffer(raw, dtype=torch.uint8).view(num_rows, row_bytes)


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor,
    strides: torch.Tensor,
    tgt_loc: torch.Tensor,
    src_loc: torch.Tensor,
) -> None:
    """For every buffer b: row `tgt_loc[i]` of b := row `src_loc[i]` of b, for all i.

    CPU twin of sglang's Triton `copy_all_layer_kv_cache_tiled` (kernels/ops/kvcache/cache_move.py).

    Args:
        data_ptrs: `[num_bufs]` uint64, base address of each per-layer K/V buffer (CPU memory of
            this process; `tensor.data_ptr()` values).
        strides: `[num_bufs]` int64, bytes per slot row of each buffer; also the bytes copied.
        tgt_loc, src_loc: `[num_locs]` int32/int64 slot indices, non-negative.

    Mutates the memory behind `data_ptrs` only. Safe in place: all source rows of a buffer are
    gathered before any target row is written, so `tgt_loc` and `src_loc` may overlap arbitrarily.
    If `tgt_loc` repeats a slot, which source lands there is unspecified (as in the Triton kernel).

    Assumption (raw pointers carry no size): each buffer holds at least
    `max(tgt_loc.max(), src_loc.max()) + 1` rows of `strides[b]` bytes; the view of the buffer is
    sized to exactly that many rows. Raises IndexError on a negative slot index.
    Cost: O(num_bufs * num_locs * row_bytes) bytes moved, one gather and one scatter per buffer.
    """
    if data_ptrs.numel() == 0 or tgt_loc.numel() == 0:
        return
    tgt = tgt_loc.reshape(-1).to(torch.int64)
    src = src_loc.reshape(-1).to(torch.int64)
    if int(torch.minimum(tgt.min(), src.min())) < 0:
        raise IndexError("copy_all_layer_kv_cache_cpu: negative slot index")
    num_rows = int(torch.maximum(tgt.max(), src.max())) + 1
    for address, row_bytes in zip(data_ptrs.tolist(), strides.tolist(), strict=True):
        rows = _row_view(int(address), int(row_bytes), num_rows)
        rows[tgt] = rows[src]  # advanced indexing gathers a copy first: in-place safe
