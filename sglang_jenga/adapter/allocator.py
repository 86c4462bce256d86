"""sglang token allocators backed by the jenga core's request manager.

sglang hands out *slots* (one token of one layer type's pool). Here a slot is a row of a core small
page, which holds sglang's `--page-size` P tokens, shifted by the reserved large page (buffer.py). Sizes
and demands sglang states in tokens are P per page. Allocations go to the request that asked
(`JengaBuffer.alloc_planned_by_type`, and at P > 1 sglang's paged `alloc_extend` / `alloc_decode` over
`JengaBuffer.alloc_paged`), capacity questions to the manager's one `fits`, eviction to its `make_room`.
Three allocators:

- `JengaTokenAllocator` (one attention type): sglang's `TokenToKVPoolAllocator`.
- `JengaSWAAllocator` (full + sliding-window types): sglang's `SWATokenToKVPoolAllocator`, so the
  scheduler's hybrid-SWA paths (window release, SWA-aware tree cache, `SharedSWAPrefillBudget`)
  run unchanged. Both types come out of the same large pages, so "available" is a joint question.
- `JengaEncoderDecoderAllocator`: full-attention slots for text, cross-attention slots for encoder tokens.

Frees requested inside `free_group_begin/end` are held until the group ends, as sglang expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sglang_jenga.adapter.buffer import JengaBuffer, rows_per_page
from sglang_jenga.adapter.compat import sglang_classes, swa_allocator_fields

_sgl: Any = sglang_classes()  # sglang's classes, resolved at run time


class TypeSlots:
    """One layer type's slots, shaped like the sub-allocators sglang reads off an SWA allocator. Sizes count
    slots (P per page of a token type)."""

    free_pages = None
    release_pages = None
    debug_mode = False

    def __init__(self, jenga: JengaBuffer, name: str) -> None:
        self.jenga, self.name = jenga, name
        self.page_size = rows_per_page(jenga.layout, name)
        self.size = jenga.allocator.of(name).num_pages * self.page_size

    def available_size(self) -> int:
        return self.jenga.allocator.of(self.name).available() * self.page_size

    def used(self) -> int:
        return self.jenga.allocator.of(self.name).pages_used * self.page_size

    def alloc(self, n: int, row: int | None = None) -> torch.Tensor:
        """The slots of `n` pages for the request on req_to_token row `row`; raises OutOfPagesError, allocating
        nothing, when they do not fit."""
        return self.jenga.to_slots(self.name, self.jenga.alloc_one_type(self.name, n, row))

    def free(self, slots: torch.Tensor) -> None:
        if slots.numel():
            self.jenga.manager.free(self.name, self.jenga.to_pages(self.name, slots))


def make_room(jenga: JengaBuffer, demand: Mapping[str, int]) -> bool:
    """Evict until `demand` (pages per type) can be allocated at once; returns whether it can."""
    return jenga.manager.make_room(demand)


def pages_for(jenga: JengaBuffer, tokens: float) -> int:
    """Pages that hold `tokens` (sglang's token counts; P = 16: 17 tokens -> 2 pages)."""
    return int(-(-tokens // jenga.page_size))


class PagedAlloc:
    """sglang's paged allocation API (`alloc_extend` / `alloc_decode`, used when --page-size > 1) over
    `JengaBuffer.alloc_paged`: each request's new tokens fill the page its row ends in, then new pages
    placed with its others. `_paired` is told every type's new pages (SWA: pair them)."""

    jenga: JengaBuffer
    tokens_type: str

    def alloc_extend(self, prefix_lens: torch.Tensor, prefix_lens_cpu: torch.Tensor, seq_lens: torch.Tensor,
                     seq_lens_cpu: torch.Tensor, last_loc: torch.Tensor, extend_num_tokens: int,
                     **kwargs: Any) -> torch.Tensor | None:
        prefix, seq = prefix_lens_cpu.tolist(), seq_lens_cpu.tolist()
        got = self.jenga.alloc_paged(prefix, seq)
        if got is None:
            return None
        new, pages = got
        self._paired(pages)
        return self.jenga.paged_slots(self.tokens_type, prefix, seq, last_loc.tolist(), new, pages[self.tokens_type])

    def alloc_decode(self, seq_lens: torch.Tensor, seq_lens_cpu: torch.Tensor, last_loc: torch.Tensor,
                     **kwargs: Any) -> torch.Tensor | None:
        """One token per request (`seq_lens` counts it): the slot after `last_loc`, or the first slot of a new
        page for a request whose token starts one (1 in P steps)."""
        P = self.jenga.page_size
        out = last_loc.to(torch.int64) + 1
        starts = ((seq_lens_cpu - 1) // P).tolist()
        new = ((seq_lens_cpu - 1) % P == 0).tolist()
        if not any(new):
            return out
        pages = self.jenga.alloc_pages(new, starts)
        if pages is None:
            return None
        self._paired(pages)
        at = torch.tensor([i for i, n in enumerate(new) if n], dtype=torch.int64, device=out.device)
        out[at] = self.jenga.first_slots(self.tokens_type, pages[self.tokens_type])
        return out

    def get_extend_allocation_demand(self, prefix_lens_cpu: torch.Tensor, seq_lens_cpu: torch.Tensor, *,
                                     conservative_num_tokens: int, shard_size: int) -> int:
        """The exact tokens of the new pages (sglang's default assumes a new page per request)."""
        P = self.jenga.page_size
        return int(((seq_lens_cpu + P - 1) // P - (prefix_lens_cpu + P - 1) // P).sum()) * P

    def _paired(self, pages: dict[str, list[int]]) -> None:
        """New pages of every token type were taken together (one page of each per position)."""


def _planned_slots(jenga: JengaBuffer, need_size: int,
                   name: str) -> tuple[torch.Tensor, dict[str, list[int]]] | None:
    """A flat allocation of `need_size` slots (`JengaBuffer.alloc_planned_by_type`): type `name`'s slots in batch
    order, and every type's pages in batch order; None if they do not fit. At page size P > 1 (sglang's paged
    `alloc`, outside its request flows) `need_size` is a multiple of P: whole pages of the SHARED record."""
    P = jenga.page_size
    if P > 1:
        if need_size % P:
            raise ValueError(f"a flat allocation of {need_size} slots is not whole pages of {P}")
        parts = jenga.alloc_planned(need_size // P, plan=[])
        pages = None if parts is None else {n: parts[0].get(n, []) for n in jenga.manager.names}
    else:
        pages = jenga.alloc_planned_by_type(need_size)
    if pages is None:
        return None
    return jenga.to_slots(name, pages[name]), pages


class JengaTokenAllocator(PagedAlloc, _sgl.TokenToKVPoolAllocator):
    """One attention type (e.g. a full-attention-only model): slots of the tokens type."""

    def __init__(self, jenga: JengaBuffer, kvcache: Any, dtype: torch.dtype, device: str) -> None:
        self.jenga = jenga
        self.slots = TypeSlots(jenga, jenga.types.tokens)
        self.tokens_type = self.slots.name
        _sgl.BaseTokenToKVPoolAllocator.__init__(self, self.slots.size, jenga.page_size, dtype, device, kvcache,
                                                 False)

    def clear(self) -> None:
        self.free_group = None
        self.jenga.clear()

    def available_size(self) -> int:
        return self.slots.available_size()

    def alloc(self, need_size: int) -> torch.Tensor | None:
        got = _planned_slots(self.jenga, need_size, self.slots.name)
        return None if got is None else got[0]

    def free(self, free_index: torch.Tensor) -> None:
        if free_index.numel() == 0:
            return
        if self.free_group is not None:
            self.free_group.append(free_index.clone())  # sglang's copy: the caller may reuse the tensor
        else:
            self.slots.free(free_index)

    def get_all_free_pages(self) -> None:
        return None

    def free_group_begin(self) -> None:
        super().free_group_begin()
        self.jenga.hold_closes()

    def free_group_end(self) -> None:
        super().free_group_end()
        self.jenga.run_closes()


class JengaSWAAllocator(PagedAlloc, _sgl.SWATokenToKVPoolAllocator):
    """The tokens type (full attention) + the paired type (sliding window, chunked local) from one pool;
    `full_to_swa_index_mapping` pairs their slots."""

    swa_req_ring = False  # slots come from the shared pool, not from a per-request ring
    swa_ring_cost_tokens = 0
    free_group: list[torch.Tensor] | None  # set by sglang's free_group_begin
    swa_free_group: list[torch.Tensor]

    @property
    def size(self) -> int:
        return self.full_attn_allocator.size

    @size.setter
    def size(self, value: int) -> None:  # BaseTokenToKVPoolAllocator.__init__ assigns it
        pass

    @property
    def size_full(self) -> int:
        return self.full_attn_allocator.size

    @property
    def size_swa(self) -> int:
        return self.swa_attn_allocator.size

    def __init__(self, jenga: JengaBuffer, kvcache: Any, dtype: torch.dtype, device: str) -> None:
        self.jenga = jenga
        assert jenga.types.paired is not None
        self.full_type, self.swa_type = jenga.types.tokens, jenga.types.paired  # type names
        self.tokens_type = self.full_type
        self.full_attn_allocator = TypeSlots(jenga, self.full_type)
        self.swa_attn_allocator = TypeSlots(jenga, self.swa_type)
        _sgl.BaseTokenToKVPoolAllocator.__init__(self, self.size_full, jenga.page_size, dtype, device, kvcache,
                                                 False)
        swa_allocator_fields(self, self.size_full, self.size_swa)
        self.need_sort = False
        # Trailing -1: a last_loc of -1 maps to -1 (sglang's convention).
        full_rows, swa_rows = jenga.num_rows(self.full_type), jenga.num_rows(self.swa_type)
        self.full_to_swa_index_mapping = torch.zeros(full_rows + 1, dtype=torch.int64, device=device)
        self.full_to_swa_index_mapping[-1] = -1
        self.swa_to_full = torch.zeros(swa_rows, dtype=torch.int64, device=device)
        self.swa_free_group: list[torch.Tensor] = []
        self.swa_page_ids_group: list[torch.Tensor] = []
        self.get_kvcache().register_mapping(self.full_to_swa_index_mapping)

    # -- capacity -----------------------------------------------------------------------------
    def full_available_size(self) -> int:
        return self.full_attn_allocator.available_size()

    def swa_available_size(self) -> int:
        return self.swa_attn_allocator.available_size()

    def available_size(self) -> int:
        """Tokens that fit with both their full and their sliding-window slot."""
        limit = min(self.full_available_size(), self.swa_available_size()) // self.page_size
        return self.jenga.manager.largest_fitting((self.full_type, self.swa_type), limit) * self.page_size

    def swa_capacity_and_available(
        self, *, full_capacity: int, swa_capacity: int
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """Capacity of a type = what it holds + what it could take now (the pool is shared, so the
        static capacities sglang passes in do not apply)."""
        full_av, swa_av = self.full_available_size(), self.swa_available_size()
        return (
            (self.full_attn_allocator.used() + full_av, full_av),
            (self.swa_attn_allocator.used() + swa_av, swa_av),
        )

    def new_pages_available(self, num_full_pages: int, num_swa_pages: int) -> bool:
        return self.jenga.manager.fits({self.full_type: num_full_pages, self.swa_type: num_swa_pages})

    def can_reserve(
        self, full_tokens: float, swa_tokens: float, *, full_evictable_tokens: int = 0,
        swa_evictable_tokens: int = 0, empty_pool: bool = False, require_token_slack: bool = False,
    ) -> bool:
        """Whether pending full/SWA demand fits the shared pool after evicting what the tree could give
        back (evicted pages of a type serve that type). `empty_pool` asks about an empty pool."""
        if full_tokens < 0 or swa_tokens < 0:
            return False
        full, swa = int(-(-full_tokens // 1)), int(-(-swa_tokens // 1))
        if require_token_slack and (full >= self.size_full or swa >= self.size_swa):
            return False
        if empty_pool:
            return self.jenga.fits_empty({self.full_type: pages_for(self.jenga, full),
                                          self.swa_type: pages_for(self.jenga, swa)})
        return self.jenga.manager.fits({self.full_type: pages_for(self.jenga, max(0, full - full_evictable_tokens)),
                                        self.swa_type: pages_for(self.jenga, max(0, swa - swa_evictable_tokens))})

    def create_prefill_budget(self, tree_cache: Any, *, num_mixed_decode_tokens: int = 0) -> Any:
        return _sgl.SharedSWAPrefillBudget(self, tree_cache, num_mixed_decode_tokens=num_mixed_decode_tokens)

    def evict_to_free_tokens(self, tree_cache: Any, num_tokens: int, swa_num_tokens: int | None = None) -> bool:
        """Evict from the tree until `num_tokens` full and `swa_num_tokens` (default: as many) SWA slots
        can be allocated together. Returns whether they can."""
        swa = num_tokens if swa_num_tokens is None else swa_num_tokens
        return make_room(self.jenga, {self.full_type: pages_for(self.jenga, num_tokens),
                                      self.swa_type: pages_for(self.jenga, swa)})

    def check_decode_capacity(self, *, num_tokens: int, tree_cache: Any, requests: Any = None,
                              spec_algorithm: Any = None) -> bool:
        return self.evict_to_free_tokens(tree_cache, num_tokens)

    # -- alloc / free ---------------------------------------------------------------------------
    def alloc(self, need_size: int) -> torch.Tensor | None:
        got = _planned_slots(self.jenga, need_size, self.full_type)
        if got is None:
            return None
        full, pages = got
        swa = self.jenga.to_slots(self.swa_type, pages[self.swa_type])
        self.set_full_to_swa_mapping(full, swa)
        return full

    def _paired(self, pages: dict[str, list[int]]) -> None:
        """Paged allocation: the new full and sliding-window pages are paired row by row."""
        if pages[self.full_type]:
            self.set_full_to_swa_mapping(self.jenga.to_slots(self.full_type, pages[self.full_type]),
                                         self.jenga.to_slots(self.swa_type, pages[self.swa_type]))

    def set_full_to_swa_mapping(self, full_indices: torch.Tensor, swa_indices: torch.Tensor) -> None:
        if full_indices.numel():
            self.full_to_swa_index_mapping[full_indices.long()] = swa_indices.long()
            self.swa_to_full[swa_indices.long()] = full_indices.long()

    def free(self, free_index: torch.Tensor) -> None:
        if free_index.numel():
            self.free_swa(free_index)
            self.free_full(free_index)

    def free_segment(self, free_index: torch.Tensor, *, start_pos: int) -> None:
        self.free(free_index)

    def free_swa(self, free_index: torch.Tensor) -> None:
        """Free the SWA peers of full slots `free_index` (those still paired) and unpair them; at P > 1 the
        peers of every slot of their pages (sglang's rule: a page is freed whole)."""
        if free_index.numel() == 0:
            return
        full = self.jenga.page_rows(self.full_type, free_index.long())
        swa = self.full_to_swa_index_mapping[full]
        swa = swa[swa > 0]
        self.full_to_swa_index_mapping[full] = 0
        if self.free_group is not None:
            self.swa_free_group.append(swa.clone())
        else:
            self.swa_attn_allocator.free(swa)

    def free_swa_segment(self, free_index: torch.Tensor, *, start_pos: int) -> None:
        self.free_swa(free_index)

    def free_full(self, free_index: torch.Tensor) -> None:
        if free_index.numel() == 0:
            return
        if self.free_group is not None:
            self.free_group.append(free_index.clone())
        else:
            self.full_attn_allocator.free(free_index)

    def free_full_segment(self, free_index: torch.Tensor, *, start_pos: int) -> None:
        self.free_full(free_index)

    def free_group_begin(self) -> None:
        _sgl.BaseTokenToKVPoolAllocator.free_group_begin(self)
        self.swa_free_group = []
        self.jenga.hold_closes()

    def free_group_end(self) -> None:
        full, self.free_group = self.free_group, None
        swa, self.swa_free_group = self.swa_free_group, []
        if swa:
            self.swa_attn_allocator.free(torch.cat(swa))
        if full:
            self.full_attn_allocator.free(torch.cat(full))
        self.jenga.run_closes()

    def on_tree_freed(self, pages: Mapping[str, list[int]]) -> None:
        """The tree freed these core pages (eviction, duplicates): unpair their slots."""
        if pages.get(self.swa_type):
            swa = self.jenga.to_slots(self.swa_type, pages[self.swa_type])
            full = self.swa_to_full[swa]
            paired = self.full_to_swa_index_mapping[full] == swa
            self.full_to_swa_index_mapping[full[paired]] = 0
        if pages.get(self.full_type):
            self.full_to_swa_index_mapping[self.jenga.to_slots(self.full_type, pages[self.full_type])] = 0

    def clear(self) -> None:
        self.jenga.clear()
        self.full_to_swa_index_mapping[:-1].fill_(0)
        self.swa_to_full.fill_(0)
        self.free_group = None
        self.swa_free_group = []

    def resize(self, config: Any) -> None:
        raise NotImplementedError("the jenga pool is sized once at start-up")

    def get_all_free_pages(self) -> None:
        return None

    def debug_print(self) -> str:
        return (f"#jenga full-available: {self.full_available_size()}, "
                f"#jenga swa-available: {self.swa_available_size()}, "
                f"#large pages free: {self.jenga.allocator.large_pages_free}")


class JengaEncoderDecoderAllocator(JengaTokenAllocator):
    """Full self-attention slots for text tokens, cross-attention slots for encoder (image) tokens.

    sglang asks for one flat `alloc(n)` per extend batch, encoder tokens included; which of them are
    encoder tokens comes with the plan (the plugin wraps sglang's `alloc_for_extend`): each request's
    part of the result is its cross-attention slots, then its full-attention slots. Frees come by
    position through the tree cache (`free_encoder`), since the two types' slot ids overlap.

    Capacity is reported in full-attention tokens: a large page carved for cross-attention counts as
    the full-attention slots it displaces (see JengaRadixCache's sizes), so sglang's token accounting
    stays exact when idle and conservative while busy. That requires an encoder token to cost no more
    than a text token (true for mllama: fewer cross-attention than self-attention layers).
    """

    def __init__(self, jenga: JengaBuffer, kvcache: Any, dtype: torch.dtype, device: str) -> None:
        super().__init__(jenga, kvcache, dtype, device)
        assert jenga.types.encoder is not None
        self.cross = TypeSlots(jenga, jenga.types.encoder)

    def alloc(self, need_size: int) -> torch.Tensor | None:
        parts = self.jenga.alloc_planned(need_size)
        if parts is None:
            return None
        order = (self.cross.name, self.slots.name)  # each request's encoder slots, then its text slots
        pages = [self.jenga.to_slots(name, part[name]) for part in parts for name in order if part.get(name)]
        return torch.cat(pages) if pages else self.jenga.to_slots(self.slots.name, [])

    def free_encoder(self, slots: torch.Tensor) -> None:
        """Free slots of encoder positions (cross-attention slots; text slots go through `free`)."""
        self.cross.free(slots)
