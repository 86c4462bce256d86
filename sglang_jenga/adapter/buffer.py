"""The one byte buffer of a jenga server, and the sglang-facing slot view of the core allocator.

Large page 0 of the buffer is reserved: it holds slot 0 of every type, which sglang uses as the
padding slot (dummy writes of padded tokens land there), so no real page ever shares bytes with it.
Core large page i is buffer large page i + 1, hence a type's sglang slot = core page + one large
page worth of slots (`slot_offset`).

Per-layer views (`kv_views`) follow the core's token-major row layout (core/layout.py): type T's
row r starts at byte r * token_bytes(T); layer l's K sits l * 2*H*D*e bytes into the row and its V
H*D*e bytes after that. A view is `[rows, H, D]` with row stride token_bytes(T) / e, which every
sglang attention backend accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import torch

from sglang_jenga.core import Layout, TwoLevelAllocator

logger = logging.getLogger(__name__)


class JengaBuffer:
    """The shared KV buffer plus the core allocator that carves it. One per (target) model runner."""

    def __init__(self, layout: Layout, num_large_pages: int, device: str) -> None:
        if layout.tokens_per_page != 1:
            raise ValueError("the sglang adapter runs the core with one token per page")
        self.layout = layout
        self.device = device
        self.num_large_pages = num_large_pages
        self.nbytes = (num_large_pages + 1) * layout.large_page_bytes
        self.data = torch.zeros(self.nbytes, dtype=torch.uint8, device=device)
        self.allocator = TwoLevelAllocator(layout, num_large_pages)
        self.on_reset: list[Callable[[], None]] = []

    def clear(self) -> None:
        """Called when sglang clears its allocator (flush_cache, after the tree cache emptied itself):
        every page must be free by now. A page still in use is a leak: it is logged and the pool is
        rebuilt (listeners in `on_reset`, i.e. the tree cache, start over on the new one)."""
        used = {t.name: t.pages_used for t in self.allocator.stats().types if t.pages_used}
        if not used:
            return
        logger.error("jenga: pages still in use when the pool was cleared (leak): %s", used)
        self.allocator = TwoLevelAllocator(self.layout, self.num_large_pages)
        for callback in self.on_reset:
            callback()

    def fits_empty(self, demand: Mapping[str, int]) -> bool:
        """Whether `demand` (pages per type) would fit the pool if it were empty."""
        need = sum(-(-n // self.layout.type(name).pages_per_large) for name, n in demand.items())
        return need <= self.num_large_pages

    # -- slots <-> core pages -------------------------------------------------------------------
    def slot_offset(self, name: str) -> int:
        """sglang slot of core page 0 of type `name` (one reserved large page of slots)."""
        return self.layout.type(name).pages_per_large

    def num_rows(self, name: str) -> int:
        """Rows of type `name` across the whole buffer, the reserved large page included."""
        return (self.num_large_pages + 1) * self.layout.type(name).pages_per_large

    def to_slots(self, name: str, pages: Sequence[int]) -> torch.Tensor:
        """Core page ids -> int64 slot tensor on the buffer's device."""
        t = torch.tensor(pages, dtype=torch.int64)
        return (t + self.slot_offset(name)).to(self.device)

    def to_pages(self, name: str, slots: torch.Tensor) -> list[int]:
        """Slot tensor -> core page ids (a host list)."""
        return (slots.to("cpu", torch.int64) - self.slot_offset(name)).tolist()

    # -- views ---------------------------------------------------------------------------------
    def kv_views(
        self, name: str, dtype: torch.dtype, kv_heads: int, head_dim: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer K and V views `[rows, kv_heads, head_dim]` of type `name`, layer order as in the
        core layout."""
        t = self.layout.type(name)
        e = torch.empty((), dtype=dtype).element_size()
        row, half = t.token_bytes // e, kv_heads * head_dim
        if row * e != t.token_bytes or 2 * half * t.num_layers != row:
            raise ValueError(f"{name}: row of {t.token_bytes} B does not hold {t.num_layers} layers "
                             f"of {kv_heads}x{head_dim} {dtype}")
        base = self.data.view(dtype)
        shape, stride = (self.num_rows(name), kv_heads, head_dim), (row, head_dim, 1)
        ks = [torch.as_strided(base, shape, stride, 2 * half * layer) for layer in range(t.num_layers)]
        vs = [torch.as_strided(base, shape, stride, 2 * half * layer + half) for layer in range(t.num_layers)]
        return ks, vs

    def rows_view(self, name: str) -> torch.Tensor:
        """Type `name`'s rows as `[rows, token_bytes]` uint8 (all layers of a token in one row)."""
        t = self.layout.type(name)
        return self.data[: self.num_rows(name) * t.token_bytes].view(self.num_rows(name), t.token_bytes)
