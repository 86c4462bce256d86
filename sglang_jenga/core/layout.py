"""LCM layout: small-page bytes per type, the large page, state padding, and the page-id <-> byte conventions.

Conventions (the adapter builds one byte buffer and strided per-layer views on them):
  * small page id `k` of type T lives at byte offset `k * page_bytes(T)` from the buffer start; since the
    large page is a multiple of every page_bytes, that is large page `k // pages_per_large(T)`, slot
    `k % pages_per_large(T)` inside it. Inverse: `k = byte_offset // page_bytes(T)`.
  * TOKENS/REQUEST types: token j (0 <= j < P) of page k is slot (row) `k * P + j`; a row is one token of all
    the type's layers, token-major, K then V per layer: layer l's K starts `l * 2*kv_heads*head_dim*dtype`
    bytes into the row, its V half a layer later. Row stride = token_bytes(T), so these pages are never
    padded.
  * STATE types: one row per page, row stride = the padded page bytes; layer l's state starts
    `l * state_bytes_per_layer` bytes into the page.

Padding rule (only STATE pages are ever padded). A = LCM of the attention-like page sizes, L = LCM(A, state
pages). If L <= max_large_page_bytes the large page is L, unpadded. Otherwise every state page S is rounded up
to a multiple of A, S' = ceil(S / A) * A, so a large page is LCM(A, S', ...) (= S' with one state type; when
several state types still exceed the bound, all are padded to the largest S', making the large page that S').
The large page is always at least the largest page, so it may exceed the bound when one page alone does.

Worked numbers (sglang state dtypes, see shapes.py):
  * Qwen3-Next, P=64: A = 64 * 24,576 = 1,572,864 B; S = 77,266,944 B; L = 618,135,552 B (589 MiB) > 64 MiB,
    so S' = 50 * A = 78,643,200 B: large page 75 MiB, padding 1,376,256 B per state page (1.75 %).
  * Qwen3-Next, P=1: A = 24,576; L = S = 77,266,944 > 64 MiB, but S is already 3,144 * A: no padding.
  * Gemma-3-27B, P=1: full 81,920 B/page, swa 425,984 B/page, L = 2,129,920 B = 26 full or 5 swa pages.

The 64 MiB default bound keeps a GPU pool of 16 GiB or more at >= 256 large pages (fine-grained sharing
between types) while every state page of the real shapes fits one large page; padding then costs < A per state
page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from .specs import ModelSpec, PageKind, ceil_div, lcm_all

DEFAULT_MAX_LARGE_PAGE_BYTES = 64 * 2**20


class TypeLayout(NamedTuple):
    """One type's page geometry. `page_bytes` includes padding; `raw_page_bytes` does not."""

    name: str
    kind: PageKind
    num_layers: int
    token_bytes: int
    raw_page_bytes: int
    page_bytes: int
    pages_per_large: int

    @property
    def padding_bytes_per_page(self) -> int:
        return self.page_bytes - self.raw_page_bytes

    @property
    def padding_fraction(self) -> float:
        """Padding / padded page bytes (Qwen3-Next P=64: 1,376,256 / 78,643,200 = 0.0175)."""
        return self.padding_bytes_per_page / self.page_bytes


class PageLocation(NamedTuple):
    """Where a small page sits: its large page and its byte offset from the buffer start."""

    large_page: int
    byte_offset: int


@dataclass(frozen=True)
class Layout:
    """The planned geometry of one model at `tokens_per_page`. Immutable; all methods O(1) after `index`."""

    model: ModelSpec
    tokens_per_page: int
    large_page_bytes: int
    attention_lcm_bytes: int
    unpadded_lcm_bytes: int
    types: tuple[TypeLayout, ...]

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    def index(self, name: str) -> int:
        """Position of type `name` in `types` (raises KeyError)."""
        return self._positions[name]

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {t.name: i for i, t in enumerate(self.types)}

    def type(self, name: str) -> TypeLayout:
        return self.types[self.index(name)]

    def locate(self, name: str, page_id: int) -> PageLocation:
        """(type, small page id) -> (large page index, byte offset from the buffer start)."""
        t = self.type(name)
        return PageLocation(page_id // t.pages_per_large, page_id * t.page_bytes)

    def page_at(self, name: str, byte_offset: int) -> int:
        """Inverse of `locate`: the small page id of type `name` starting at `byte_offset` (ValueError if not
        page-aligned)."""
        t = self.type(name)
        if byte_offset % t.page_bytes:
            raise ValueError(f"offset {byte_offset} is not a multiple of {name}'s page ({t.page_bytes} B)")
        return byte_offset // t.page_bytes

    def slot(self, name: str, page_id: int, token_in_page: int) -> int:
        """Row index (sglang slot) of token `token_in_page` of page `page_id`: page_id * P + token_in_page."""
        if not 0 <= token_in_page < self.tokens_per_page:
            raise ValueError(f"token_in_page {token_in_page} outside [0, {self.tokens_per_page})")
        return page_id * self.tokens_per_page + token_in_page

    def row_stride_bytes(self, name: str) -> int:
        """Byte stride between consecutive rows of type `name` (a token row, or a whole state page)."""
        t = self.type(name)
        return t.page_bytes if t.kind is PageKind.STATE else t.token_bytes

    def layer_offset_bytes(self, name: str, layer: int) -> int:
        """Offset of layer `layer` (0-based within the type) inside a row: its K for attention types (V
        follows at + kv_heads*head_dim*dtype), its state for STATE types."""
        group = self.model.group(name)
        if not 0 <= layer < group.num_layers:
            raise ValueError(f"{name} has {group.num_layers} layers, not {layer}")
        tokens = self.tokens_per_page if group.spec.kind is PageKind.STATE else 1
        return layer * group.spec.page_bytes(tokens, 1)

    def large_pages_for(self, pool_bytes: int) -> int:
        """How many whole large pages fit in `pool_bytes`."""
        return pool_bytes // self.large_page_bytes


def plan_layout(
    model: ModelSpec, tokens_per_page: int = 1, max_large_page_bytes: int = DEFAULT_MAX_LARGE_PAGE_BYTES,
) -> Layout:
    """Plan the LCM layout of `model` (see module docstring for the rule and worked numbers). Pure;
    O(types)."""
    if tokens_per_page <= 0:
        raise ValueError("tokens_per_page must be positive")
    raw = [g.spec.page_bytes(tokens_per_page, g.num_layers) for g in model.groups]
    is_state = [g.spec.kind is PageKind.STATE for g in model.groups]
    attn_lcm = lcm_all([b for b, s in zip(raw, is_state, strict=True) if not s])
    unpadded = lcm_all([attn_lcm, *raw])
    padded = _pad_states(raw, is_state, attn_lcm, unpadded, max_large_page_bytes)
    large = lcm_all([attn_lcm, *padded])
    types = tuple(
        TypeLayout(g.spec.name, g.spec.kind, g.num_layers, g.spec.token_bytes(g.num_layers), r, p, large // p)
        for g, r, p in zip(model.groups, raw, padded, strict=True)
    )
    return Layout(model, tokens_per_page, large, attn_lcm, unpadded, types)


def _pad_states(
    raw: Sequence[int], is_state: Sequence[bool], attn_lcm: int, unpadded: int, bound: int,
) -> list[int]:
    """Padded page bytes per type: unchanged when the plain LCM fits `bound`, else state pages rounded up to a
    multiple of `attn_lcm` (all to the largest such size if their LCM still exceeds the bound)."""
    if unpadded <= bound:
        return list(raw)
    padded = [ceil_div(b, attn_lcm) * attn_lcm if s else b for b, s in zip(raw, is_state, strict=True)]
    states = [b for b, s in zip(padded, is_state, strict=True) if s]
    if states and lcm_all([attn_lcm, *states]) > max(bound, max(states)):
        top = max(states)
        padded = [top if s else b for b, s in zip(padded, is_state, strict=True)]
    return padded
