"""sglang KV pools whose per-layer buffers are views into the one jenga buffer.

`JengaMHAPool` is sglang's `MHATokenToKVPool` with its buffers replaced by `JengaBuffer.kv_views`
(one pool per layer type); `JengaSWAKVPool` is sglang's `SWAKVPool` built from two of them, so
every sglang code path that checks `isinstance(pool, SWAKVPool)` (attention backends, scheduler)
runs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from sglang_jenga.adapter import transfer
from sglang_jenga.adapter.buffer import JengaBuffer
from sglang_jenga.adapter.compat import MHABufferHook, sglang_classes

_sgl: Any = sglang_classes()  # sglang's classes, resolved at run time


class JengaMHAPool(MHABufferHook, _sgl.MHATokenToKVPool):
    """MHATokenToKVPool over the rows of one jenga layer type: its `layer_num` layers from the row's layer
    `first_layer` on (a draft model's layers follow the target's). `size` counts the type's slots."""

    def __init__(self, *, jenga: JengaBuffer, type_name: str, reported_bytes: int, size: int | None = None,
                 first_layer: int = 0, **kwargs: Any) -> None:
        rows = jenga.num_rows(type_name)
        # sglang's size excludes one reserved page of slots (its padding page); jenga reserves a large page.
        assert size in (None, rows - jenga.page_size), f"{type_name}: pool size {size} != {rows} rows - a page"
        self._jenga = jenga
        self._jenga_type = type_name
        self._jenga_bytes = reported_bytes
        self._first_layer = first_layer
        kwargs["enable_kv_cache_copy"] = False  # move_kv_cache below copies whole rows instead
        super().__init__(size=rows - jenga.page_size, page_size=jenga.page_size, **kwargs)

    def create_buffers(self) -> None:
        ks, vs = self._jenga.kv_views(self._jenga_type, self.store_dtype, self.head_num, self.head_dim)
        layers = slice(self._first_layer, self._first_layer + self.layer_num)
        self.k_buffer, self.v_buffer = ks[layers], vs[layers]
        assert len(self.k_buffer) == self.layer_num, f"{self._jenga_type}: rows hold {len(ks)} layers"

    def get_kv_size_bytes(self) -> tuple[int, int]:
        """This type's share of the shared buffer (the views overlap, so numel would overcount)."""
        return self._jenga_bytes // 2, self._jenga_bytes - self._jenga_bytes // 2

    def move_kv_cache(self, tgt_loc: torch.Tensor, src_loc: torch.Tensor) -> None:
        """Copy whole rows (every layer of the type at once); safe when tgt and src overlap."""
        if tgt_loc.numel():
            rows = self._jenga.rows_view(self._jenga_type)
            rows[tgt_loc.long()] = rows[src_loc.long()]

    def get_contiguous_buf_infos(self) -> tuple[list[int], list[int], list[int]]:
        """PD transfer entries: the type's whole rows from the buffer start, as K and V halves (adapter/transfer.py).
        Also the sliding-window state of `JengaSWAKVPool` (sglang's `get_state_buf_infos` asks its swa pool)."""
        return transfer.kv_entries(self._jenga, self._jenga_type)

    def one_transfer_entry(self) -> tuple[list[int], list[int], list[int]]:
        """The type's region as a single entry, for a pool that publishes layer ids (adapter/transfer.py)."""
        return transfer.one_entry(self._jenga, self._jenga_type)


class JengaSWAKVPool(_sgl.SWAKVPool):
    """SWAKVPool whose full and sliding-window sub-pools are `JengaMHAPool`s of one buffer: the tokens type
    and the paired type (adapter/types.py)."""

    def __init__(self, *, jenga: JengaBuffer, full_kwargs: dict[str, Any], swa_kwargs: dict[str, Any],
                 **kwargs: Any) -> None:
        full, swa = jenga.types.tokens, jenga.types.paired
        assert swa is not None
        super().__init__(
            size=jenga.num_rows(full) - jenga.page_size,
            size_swa=jenga.num_rows(swa) - jenga.page_size,
            page_size=jenga.page_size,
            full_kv_pool_class=JengaMHAPool,
            swa_kv_pool_class=JengaMHAPool,
            full_kv_pool_kwargs={"jenga": jenga, "type_name": full, **full_kwargs},
            swa_kv_pool_kwargs={"jenga": jenga, "type_name": swa, **swa_kwargs},
            **kwargs,
        )


class JengaTypedKVPool(_sgl.KVCache):
    """Layers of several jenga types that need no slot translation (full self-attention and
    cross-attention of an encoder-decoder model): each layer reads and writes its own type's slots,
    which sglang already keeps apart (encoder positions of `req_to_token` hold cross-attention slots,
    text positions full-attention slots)."""

    def __init__(self, *, jenga: JengaBuffer, layer_ids: dict[str, list[int]], dtype: torch.dtype,
                 common: dict[str, Any], reported_bytes: dict[str, int]) -> None:
        self.jenga = jenga
        self.dtype = self.store_dtype = dtype
        self.device = common["device"]
        self.page_size, self.start_layer = 1, 0
        self.head_num, self.head_dim = common["head_num"], common["head_dim"]
        self.layer_transfer_counter = None
        self.pools = {
            name: JengaMHAPool(jenga=jenga, type_name=name, reported_bytes=reported_bytes[name], dtype=dtype,
                               layer_num=len(ids), **common)
            for name, ids in layer_ids.items()
        }
        self.layers_mapping = {
            lid: (self.pools[name], i) for name, ids in layer_ids.items() for i, lid in enumerate(ids)
        }
        self.layer_num = len(self.layers_mapping)
        self.end_layer = self.layer_num - 1
        self.size = self.pools[jenga.types.tokens].size
        self.mem_usage = sum(p.mem_usage for p in self.pools.values())

    def get_key_buffer(self, layer_id: int) -> torch.Tensor:
        pool, i = self.layers_mapping[layer_id]
        return pool.get_key_buffer(i)

    def get_value_buffer(self, layer_id: int) -> torch.Tensor:
        pool, i = self.layers_mapping[layer_id]
        return pool.get_value_buffer(i)

    def get_kv_buffer(self, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_key_buffer(layer_id), self.get_value_buffer(layer_id)

    def get_v_head_dim(self) -> int:
        return self.head_dim

    def set_kv_buffer(self, layer: Any, loc_info: Any, cache_k: torch.Tensor, cache_v: torch.Tensor,
                      k_scale: float | None = None, v_scale: float | None = None) -> None:
        pool, i = self.layers_mapping[layer.layer_id]
        loc = loc_info.loc if hasattr(loc_info, "loc") else loc_info
        pool.set_kv_buffer(None, loc, cache_k, cache_v, k_scale, v_scale, layer_id_override=i)

    def get_kv_size_bytes(self) -> tuple[int, int]:
        sizes = [p.get_kv_size_bytes() for p in self.pools.values()]
        return sum(k for k, _ in sizes), sum(v for _, v in sizes)

    def get_contiguous_buf_infos(self) -> tuple[list[int], list[int], list[int]]:
        """Refused: no entry list addresses a row of mixed cross-attention and full slots (adapter/transfer.py)."""
        return transfer.refuse_cross_attention()
