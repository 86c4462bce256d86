"""Workaround for sglang 0.5.23's torch_native backend reading sliding-window layers wrongly.

`TorchNativeAttnBackend` writes a sliding-window layer's KV at the SWA slots (`swa_out_cache_loc`,
translated from the full-attention slots) but reads it back through `req_to_token`, i.e. with the
untranslated full-attention slots. The two agree only while both pools hand out the same ids;
once the scheduler releases out-of-window SWA slots they drift apart and the layer reads other
tokens' KV. This wrapper hands the read path a translated copy of the batch's `req_to_token`
rows. It applies to every manager (sglang's own SWA pool has the same bug), so that jenga and the
default manager are compared on correct outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_REQ_TO_TOKEN, _REQ_POOL_INDICES, _SEQ_LENS = 4, 5, 6  # positions in _run_sdpa_forward_{extend,decode}


def translate_swa_reads(original: Callable[..., Any], backend: Any, *args: Any, **kwargs: Any) -> Any:
    """AROUND hook for `_run_sdpa_forward_extend/_decode`: sliding-window layers read SWA slots."""
    if kwargs.get("sliding_window_size") is None or kwargs.get("is_cross_attn") or not getattr(
        backend, "use_sliding_window_kv_pool", False
    ):
        return original(backend, *args, **kwargs)
    args_list = list(args)
    req_to_token, req_pool_indices = args_list[_REQ_TO_TOKEN], args_list[_REQ_POOL_INDICES]
    width = int(args_list[_SEQ_LENS].max()) if args_list[_SEQ_LENS].numel() else 0
    rows = req_to_token[req_pool_indices.long(), :width].long()
    args_list[_REQ_TO_TOKEN] = backend.token_to_kv_pool.translate_loc_from_full_to_swa(rows)
    args_list[_REQ_POOL_INDICES] = torch.arange(rows.shape[0], device=rows.device)
    return original(backend, *args_list, **kwargs)
