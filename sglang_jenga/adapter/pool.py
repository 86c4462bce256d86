"""sglang KV pools whose per-layer buffers are views into the one jenga buffer.

`JengaMHAPool` is sglang's `MHATokenToKVPool` with its buffers replaced by `JengaBuffer.kv_views`
(one pool per layer type); `JengaSWAKVPool` is sglang's `SWAKVPool` built from two of them, so
every sglang code path that checks `isinstance(pool, SWAKVPool)` (attention backends, scheduler)
runs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from sglang_jenga.adapter.buffer import JengaBuffer
from sglang_jenga.adapter.compat import sglang_classes

_sgl = sglang_classes()


class JengaMHAPool(_sgl.MHATokenToKVPool):
    """MHATokenToKVPool over the rows of one jenga layer type. `size` counts the type's slots."""

    def __init__(self, *, jenga: JengaBuffer, type_name: str, reported_bytes: int, size: int | None = None,
                 **kwargs: Any) -> None:
        rows = jenga.num_rows(type_name)
        assert size in (None, rows - 1), f"{type_name}: pool size {size} != {rows - 1} rows"
        self._jenga = jenga
        self._jenga_type = type_name
        self._jenga_bytes = reported_bytes
        kwargs["enable_kv_cache_copy"] = False  # move_kv_cache below copies whole rows instead
        super().__init__(size=rows - 1, page_size=1, **kwargs)

    def _create_buffers_normal(self) -> None:
        self.k_buffer, self.v_buffer = self._jenga.kv_views(
            self._jenga_type, self.store_dtype, self.head_num, self.head_dim
        )

    def get_kv_size_bytes(self) -> tuple[int, int]:
        """This type's share of the shared buffer (the views overlap, so numel would overcount)."""
        return self._jenga_bytes // 2, self._jenga_bytes - self._jenga_bytes // 2

    def move_kv_cache(self, tgt_loc: torch.Tensor, src_loc: torch.Tensor) -> None:
        """Copy whole rows (every layer of the type at once); safe when tgt and src overlap."""
        if tgt_loc.numel():
            rows = self._jenga.rows_view(self._jenga_type)
            rows[tgt_loc.long()] = rows[src_loc.long()]


class JengaSWAKVPool(_sgl.SWAKVPool):
    """SWAKVPool whose full and sliding-window sub-pools are `JengaMHAPool`s of one buffer."""

    def __init__(self, *, jenga: JengaBuffer, full_kwargs: dict[str, Any], swa_kwargs: dict[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(
            size=jenga.num_rows("full") - 1,
            size_swa=jenga.num_rows("swa") - 1,
            page_size=1,
            full_kv_pool_class=JengaMHAPool,
            swa_kv_pool_class=JengaMHAPool,
            full_kv_pool_kwargs={"jenga": jenga, "type_name": "full", **full_kwargs},
            swa_kv_pool_kwargs={"jenga": jenga, "type_name": "swa", **swa_kwargs},
            **kwargs,
        )
