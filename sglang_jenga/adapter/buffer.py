"""The one byte buffer of a jenga server, the core request manager that carves it, and the slot view.

Large page 0 of the buffer is reserved: it holds slot 0 of every type, which sglang uses as the
padding slot (dummy writes of padded tokens land there), so no real page ever shares bytes with it.
Core large page i is buffer large page i + 1. Slots are rows: with sglang's `--page-size` P, a small
page of a token type holds P rows (core/layout.py), so core page k's slots are (k + L) * P + j for
0 <= j < P, L the type's pages per large page (`to_slots`); a state type has one row per page.
Example, P = 16, 5 pages per large page: core page 2 is slots 112..127.

Requests. The core `KVCacheManager` keeps one record per running sglang request, keyed by its
req_to_token row + 1 (unique while the request holds KV; the record is closed when sglang releases
the row, `JengaRadixCache.on_release`). Its placement owner is that id, so a request's pages sit
together and free whole large pages. sglang allocates a batch's slots in one flat call; which
request gets how many is set just before by `plan` (the plugin wraps sglang's `alloc_for_extend`
and `alloc_for_decode`). Pages allocated outside a plan belong to the SHARED record (id 0). With
SGLANG_JENGA_PLACEMENT=shared every page does (one shared owner: request-aware placement off, for
comparison).

Per-layer views (`kv_views`) follow the core's token-major row layout (core/layout.py): type T's
row r starts at byte r * stride(T); layer l's K sits l * 2*H*D*e bytes into the row and its V
H*D*e bytes after that. A view is `[rows, H, D]` with row stride stride(T) / e, which every
sglang attention backend accepts.

Pipeline stages (`stage_rows`). Every stage plans the same layout (so the same page ids and the same
decisions on every stage; build.py says which) but stores only its own layers: type T's row holds the
stage's n(T) layers, and its stride is the stage's large page / pages_per_large(T), the stage's large page
being the smallest multiple of lcm(pages_per_large(T) x ALIGN) that gives every type its stage row. A stage
holding fewer layers of a type than the plan pads that type's rows (mellum, 3 sliding-window + 1 full
layers of 512 B rows per layer, over 2 stages: the plan has 2 sliding-window layers and 1 full, a large page
of 1,024 B; stage 0 stores 2 sliding-window layers and no full one, stage 1 one of each, so its
sliding-window rows are 1,024 B for 512 B of data). Without pipeline parallelism the strides are the layout's own.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from sglang_jenga.adapter.types import SglangTypes
from sglang_jenga.core import BatchPart, KVCacheManager, Layout, OutOfPagesError, PageKind, TwoLevelAllocator
from sglang_jenga.core.specs import ceil_div, lcm_all

logger = logging.getLogger(__name__)
SHARED = 0  # the record of pages allocated outside any request's plan
PLACEMENT_ENV = "SGLANG_JENGA_PLACEMENT"  # "request" (default) or "shared"


class PlannedAlloc(NamedTuple):
    """One request's part of the next flat allocation: its row (None: outside any request), encoder tokens
    (cross-attention slots) and token positions, and where its own pages start."""

    row: int | None
    encoder_tokens: int
    tokens: int
    start: int


# Up to this many one-row pages, `to_slots` builds the slot tensor from a C array and `to_pages` subtracts in
# Python over `tolist` (two tensor ops fewer). With caches cold, as between two forwards on a CPU server, 32 slots
# took ~50 µs so against ~80 through numpy (an in-process rig); numpy and tensor arithmetic win on long lists.
SMALL = 128
ALIGN = 64  # bytes: a stage's padded row strides are multiples of it


class Rows(NamedTuple):
    """How this process stores one type's rows: row r at byte r * `stride`, holding `layers` of the type's
    layers (a pipeline stage's own; all of them otherwise)."""

    stride: int
    layers: int


class StageRows(NamedTuple):
    """This process's large page bytes and each type's `Rows` (module docstring, pipeline stages)."""

    large_page_bytes: int
    rows: dict[str, Rows]


def stage_rows(layout: Layout, stage_layers: Mapping[str, int] | None = None) -> StageRows:
    """The row geometry of a process storing `stage_layers` (layers per type; None: every layer). Pure."""
    whole = {t.name: t.num_layers for t in layout.types}
    if stage_layers is None or dict(stage_layers) == whole:
        return StageRows(layout.large_page_bytes,
                         {t.name: Rows(layout.row_stride_bytes(t.name), t.num_layers) for t in layout.types})
    per_page = {t.name: t.pages_per_large for t in layout.types}
    need = {}
    for group in layout.model.groups:
        n = stage_layers[group.spec.name]
        if not 0 <= n <= group.num_layers:
            raise ValueError(f"{group.spec.name}: a stage of {n} of its {group.num_layers} layers")
        tokens = layout.tokens_per_page if group.spec.kind is PageKind.STATE else 1
        need[group.spec.name] = group.spec.page_bytes(tokens, n) if n else 0  # one row of the stage's layers
    per_large = {name: per_page[name] * rows_per_page(layout, name) for name in need}  # rows per large page
    unit = lcm_all([per_large[name] * ALIGN for name in need])
    large = max(unit, ceil_div(max(per_large[name] * need[name] for name in need), unit) * unit)
    return StageRows(large, {name: Rows(large // per_large[name], stage_layers[name]) for name in need})


def rows_per_page(layout: Layout, name: str) -> int:
    """Rows (sglang slots) of one small page of type `name`: P for token and encoder types, 1 for state."""
    return 1 if layout.type(name).kind is PageKind.STATE else layout.tokens_per_page


class JengaBuffer:
    """The shared KV buffer plus the core manager that carves it. One per (target) model runner; a pipeline
    stage stores `stage_layers` of each type's layers (module docstring)."""

    def __init__(self, layout: Layout, num_large_pages: int, device: str,
                 stage_layers: Mapping[str, int] | None = None, draft_layers: Mapping[str, int] | None = None) -> None:
        self.layout = layout
        self.draft_layers = dict(draft_layers or {})  # a draft model's layers per type, last in each row (build.py)
        self.types = SglangTypes.of(layout)  # which type plays which sglang role (adapter/types.py)
        self.device = device
        self._on_cpu = torch.device(device).type == "cpu"
        self.num_large_pages = num_large_pages
        self.page_size = layout.tokens_per_page  # sglang's --page-size: rows per small page of a token type
        self._rows = {t.name: rows_per_page(layout, t.name) for t in layout.types}
        # sglang slot of row 0 of core page 0: one reserved large page of rows
        self._offsets = {t.name: t.pages_per_large * self._rows[t.name] for t in layout.types}
        self.stage = stage_rows(layout, stage_layers)
        self.nbytes = (num_large_pages + 1) * self.stage.large_page_bytes
        self.data = torch.zeros(self.nbytes, dtype=torch.uint8, device=device)
        self.shared_placement = os.environ.get(PLACEMENT_ENV, "request") == "shared"
        self.manager = self._new_manager()
        self.on_reset: list[Callable[[], None]] = []
        self._plan: Callable[[], list[PlannedAlloc]] | None = None
        self._step_rows: Callable[[], list[int]] | None = None
        self._closes: list[int | None] | None = None  # rows whose close waits for a free group's end

    def _new_manager(self) -> KVCacheManager:
        manager = KVCacheManager(self.layout, self.num_large_pages)
        manager.open(SHARED)
        return manager

    @property
    def allocator(self) -> TwoLevelAllocator:
        return self.manager.allocator

    def clear(self) -> None:
        """Called when sglang clears its allocator (flush_cache, after the tree cache emptied itself):
        every page must be free by now. A page still in use is a leak: it is logged and the pool is
        rebuilt (listeners in `on_reset`, i.e. the tree cache, start over on the new one)."""
        used = {t.name: t.pages_used for t in self.allocator.stats().types if t.pages_used}
        if not used:
            return
        logger.error("jenga: pages still in use when the pool was cleared (leak): %s", used)
        self.manager = self._new_manager()
        for callback in self.on_reset:
            callback()

    def fits_empty(self, demand: dict[str, int]) -> bool:
        """Whether `demand` (pages per type) would fit the pool if it were empty."""
        return self.manager.fits_empty(demand)

    # -- requests -----------------------------------------------------------------------------
    def rid(self, row: int | None) -> int:
        """The manager's id of the request on req_to_token row `row` (SHARED for None or shared placement)."""
        return SHARED if row is None or self.shared_placement else int(row) + 1

    def plan(self, plan: Callable[[], list[PlannedAlloc]] | None,
             step_rows: Callable[[], list[int]] | None = None) -> None:
        """Who the next flat `alloc_planned` is for: a function giving the entries in batch order, called at
        allocation time (sglang assigns the rows in between); None clears. `step_rows`, for a decode step
        (one token per request): the requests' rows in batch order, cheaper to read than the entries."""
        self._plan, self._step_rows = plan, step_rows

    def _planned(self) -> list[PlannedAlloc] | None:
        return self._plan() if self._plan is not None else None

    def close(self, row: int | None) -> None:
        """The request on `row` released its KV: free what it still holds, forget its record. Between
        `hold_closes` and `run_closes` it waits."""
        if self._closes is not None:
            self._closes.append(row)
            return
        rid = self.rid(row)
        if rid != SHARED and self.manager.is_open(rid):
            left = self.manager.close(rid)
            if left:
                logger.warning("jenga: request row %s released with %d pages still its own (freed)", row, left)

    def hold_closes(self) -> None:
        """Hold `close` calls until `run_closes` (sglang's free group, which queues its frees until it ends). A
        request's row is released inside the group: at page size > 1 its partial last page is among the queued
        frees, so its record must outlive them (closing first would free that page, and the queued free would
        then find it free)."""
        self._closes = []

    def run_closes(self) -> None:
        """Close the rows held since `hold_closes`, and stop holding."""
        rows, self._closes = self._closes or [], None
        for row in rows:
            self.close(row)

    def alloc_planned(self, num_tokens: int,
                      plan: list[PlannedAlloc] | None = None) -> list[dict[str, list[int]]] | None:
        """Pages for a flat allocation of `num_tokens` slots: per plan entry (the whole call as one SHARED entry
        when no plan matches) its encoder pages (the encoder type's) and a page of every token type per
        position (`KVCacheManager.alloc_batch`). All or nothing: None when they do not fit together. `plan`:
        the entries if the caller has read them already."""
        if plan is None:
            plan = self._planned()
        if not plan or sum(p.encoder_tokens + p.tokens for p in plan) != num_tokens:
            plan = [PlannedAlloc(None, 0, num_tokens, 0)]
        parts = [BatchPart(self.rid(p.row), p.tokens, p.start,
                           {self._encoder: p.encoder_tokens} if p.encoder_tokens else None) for p in plan]
        try:
            return self.manager.alloc_batch(parts)
        except OutOfPagesError:
            return None

    def alloc_planned_by_type(self, num_tokens: int) -> dict[str, list[int]] | None:
        """`alloc_planned` with every type's pages in batch order. A decode step planned by its rows (one token
        for each of several requests that already hold token pages) goes straight to
        `KVCacheManager.alloc_step`, whose result has that shape: the same pages, without a per-request record
        of the batch."""
        rows = self._step_rows() if self._step_rows is not None else None
        if rows is not None and len(rows) == num_tokens > 1 and not self.shared_placement:
            rids = [row + 1 for row in rows]  # self.rid(row)
            if self.manager.hold_tokens(rids):
                try:
                    return self.manager.alloc_step(rids)
                except OutOfPagesError:
                    return None
        parts = self.alloc_planned(num_tokens)
        if parts is None:
            return None
        return {name: [p for part in parts for p in part.get(name, ())] for name in self.manager.names}

    def alloc_paged(self, prefix_lens: Sequence[int],
                    seq_lens: Sequence[int]) -> tuple[list[int], dict[str, list[int]]] | None:
        """Token pages for positions [prefix_lens[i], seq_lens[i]) of each planned request (batch order) at
        P = `page_size` tokens per page: request i gets pages ceil(prefix / P) .. ceil(seq / P) - 1 of its
        sequence, the page its row already has taking the first tokens. Returns (new pages per request, every
        token type's pages in batch order), or None, allocating nothing, when they do not fit together.
        P = 16, prefix 20, seq 50: two new pages (positions 2 and 3: tokens 32..49); tokens 20..31 go to the
        row's page 1."""
        P = self.page_size
        starts = [ceil_div(p, P) for p in prefix_lens]
        new = [ceil_div(s, P) - b for s, b in zip(seq_lens, starts, strict=True)]
        pages = self.alloc_pages(new, starts)
        return None if pages is None else (new, pages)

    def alloc_pages(self, new: Sequence[int], starts: Sequence[int]) -> dict[str, list[int]] | None:
        """`new[i]` pages of every token type for the i-th planned request of the batch, at its page positions
        from `starts[i]` on; every token type's pages in batch order, or None (nothing allocated) when they do
        not fit together. A plan that does not match the batch puts the pages in the SHARED record."""
        rows: Sequence[int | None] | None = self._step_rows() if self._step_rows is not None else None
        if rows is None:
            rows = [p.row for p in self._planned() or ()]
        if len(rows) != len(new):
            rows = [None] * len(new)
        parts = [BatchPart(self.rid(row), n, b) for row, n, b in zip(rows, new, starts, strict=True) if n]
        try:
            got = self.manager.alloc_batch(parts) if parts else []
        except OutOfPagesError:
            return None
        return {name: [p for part in got for p in part[name]] for name in self.manager.token_types}

    def paged_slots(self, name: str, prefix_lens: Sequence[int], seq_lens: Sequence[int], last_loc: Sequence[int],
                    new: Sequence[int], pages: Sequence[int]) -> torch.Tensor:
        """The slots of positions [prefix, seq) of each request, concatenated (sglang's `alloc_extend` result):
        the rest of the page holding slot `last_loc` (the row's last one), then its `new` pages of `pages` (type
        `name`'s, batch order, from `alloc_paged`)."""
        P = self.page_size
        fresh, at, out = self._slot_array(name, pages), 0, []
        for p, s, last, n in zip(prefix_lens, seq_lens, last_loc, new, strict=True):
            k = min(s - p, -p % P)
            if k:
                out.append(np.arange(last + 1, last + 1 + k, dtype=np.int64))
            out.append(fresh[at:at + s - p - k])
            at += n * P
        return self._on_device(np.concatenate(out) if out else np.empty(0, np.int64))

    @property
    def _encoder(self) -> str:
        assert self.types.encoder is not None, "encoder tokens planned for a model without an encoder type"
        return self.types.encoder

    def alloc_one_type(self, name: str, n: int, row: int | None = None) -> list[int]:
        """`n` pages of one type for the request on `row` (SHARED if None). Raises OutOfPagesError."""
        return self.manager.alloc_batch([BatchPart(self.rid(row), 0, 0, {name: n})])[0][name]

    # -- slots <-> core pages -------------------------------------------------------------------
    def slot_offset(self, name: str) -> int:
        """sglang slot of row 0 of core page 0 of type `name` (one reserved large page of rows)."""
        return self._offsets[name]

    def num_rows(self, name: str) -> int:
        """Rows of type `name` across the whole buffer, the reserved large page included."""
        return (self.num_large_pages + 1) * self._offsets[name]  # a large page of rows each

    def to_slots(self, name: str, pages: Sequence[int]) -> torch.Tensor:
        """Core page ids -> int64 tensor of every slot of those pages, in order, on the buffer's device. P = 16:
        pages [0, 2] of a type with 5 pages per large page -> slots 80..95, 112..127. A decode step's few
        one-row pages go through a C array (`SMALL`), long lists through numpy."""
        if len(pages) <= SMALL and self._rows[name] == 1:
            if not pages:
                return torch.empty(0, dtype=torch.int64, device=self.device)
            off = self._offsets[name]
            t = torch.frombuffer(array("q", [p + off for p in pages]), dtype=torch.int64)
            return t if self._on_cpu else t.to(self.device)
        return self._on_device(self._slot_array(name, pages))

    def _slot_array(self, name: str, pages: Sequence[int]) -> np.ndarray:
        rows, first = self._rows[name], self._first_rows(name, pages)
        return (first[:, None] + np.arange(rows, dtype=np.int64)).reshape(-1) if rows > 1 else first

    def _first_rows(self, name: str, pages: Sequence[int]) -> np.ndarray:
        return np.array(pages, dtype=np.int64) * self._rows[name] + self.slot_offset(name)

    def _on_device(self, slots: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(slots)
        return t if self._on_cpu else t.to(self.device)

    def first_slots(self, name: str, pages: Sequence[int]) -> torch.Tensor:
        """The first slot of each page (P = 16, 5 pages per large page: page 2 -> 112), on the buffer's device."""
        return self._on_device(self._first_rows(name, pages))

    def page_rows(self, name: str, slots: torch.Tensor) -> torch.Tensor:
        """Every slot of the pages holding `slots` (repeats kept), on their device: P = 16, slot 115 -> 112..127."""
        rows = self._rows[name]
        if rows == 1:
            return slots
        base = slots.long() // rows * rows
        return (base[:, None] + torch.arange(rows, dtype=torch.int64, device=slots.device)).reshape(-1)

    def to_pages(self, name: str, slots: torch.Tensor) -> list[int]:
        """Slot tensor -> the core pages holding them, each once, in order of first appearance (a host list)."""
        rows = self._rows[name]
        if rows == 1 and slots.dim() == 1 and len(slots) <= SMALL:
            off = self._offsets[name]
            return [s - off for s in slots.tolist()]
        host = slots.to("cpu", torch.int64)
        if rows == 1:
            return (host - self.slot_offset(name)).tolist()
        pages = host.numpy() // rows - self.layout.type(name).pages_per_large
        if len(pages) > 1 and not (np.diff(pages) > 0).all():  # not strictly rising: drop repeats, keep order
            _, first = np.unique(pages, return_index=True)
            pages = pages[np.sort(first)]
        return pages.tolist()

    # -- views ---------------------------------------------------------------------------------
    def row_bytes(self, name: str) -> int:
        """Byte stride between consecutive rows of type `name` in this process's buffer."""
        return self.stage.rows[name].stride

    def kv_views(
        self, name: str, dtype: torch.dtype, kv_heads: int, head_dim: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer K and V views `[rows, kv_heads, head_dim]` of type `name`'s layers stored here, layer
        order as in the core layout."""
        stride, layers = self.stage.rows[name]
        e = torch.empty((), dtype=dtype).element_size()
        row, half = stride // e, kv_heads * head_dim
        if row * e != stride or 2 * half * layers > row:
            raise ValueError(f"{name}: row of {stride} B does not hold {layers} layers "
                             f"of {kv_heads}x{head_dim} {dtype}")
        base = self.data.view(dtype)
        shape, strides = (self.num_rows(name), kv_heads, head_dim), (row, head_dim, 1)
        ks = [torch.as_strided(base, shape, strides, 2 * half * layer) for layer in range(layers)]
        vs = [torch.as_strided(base, shape, strides, 2 * half * layer + half) for layer in range(layers)]
        return ks, vs

    def rows_view(self, name: str) -> torch.Tensor:
        """Type `name`'s rows as `[rows, stride]` uint8 (all layers of a token in one row)."""
        stride = self.row_bytes(name)
        return self.data[: self.num_rows(name) * stride].view(self.num_rows(name), stride)
