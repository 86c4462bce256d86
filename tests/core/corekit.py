"""Shared helpers for the core tests: tiny fake specs (a few bytes per token) and builders."""

from __future__ import annotations

from collections.abc import Sequence

from sglang_jenga.core import (
    ChunkedLocalSpec,
    CrossAttentionSpec,
    FullAttentionSpec,
    LayerSpec,
    MambaSpec,
    ModelSpec,
    SlidingWindowSpec,
    TwoLevelAllocator,
    TypedRadixTree,
    plan_layout,
)

# 1 kv head x head_dim 1 x 1 byte: K+V = 2 bytes per token per layer.
TINY = {"kv_heads": 1, "head_dim": 1, "dtype_bytes": 1}


def full(layers: int = 1, name: str = "full") -> tuple[LayerSpec, int]:
    return FullAttentionSpec(name=name, **TINY), layers


def swa(window: int, layers: int = 1, name: str = "swa") -> tuple[LayerSpec, int]:
    return SlidingWindowSpec(name=name, window=window, **TINY), layers


def chunked(chunk: int, layers: int = 1, name: str = "chunked") -> tuple[LayerSpec, int]:
    return ChunkedLocalSpec(name=name, chunk=chunk, **TINY), layers


def mamba(
    interval: int = 4, state_bytes: int = 8, layers: int = 1, name: str = "mamba",
) -> tuple[LayerSpec, int]:
    return MambaSpec(name=name, state_bytes_per_layer=state_bytes, checkpoint_interval=interval), layers


def cross(encoder_tokens: int = 4, layers: int = 1, name: str = "cross") -> tuple[LayerSpec, int]:
    return CrossAttentionSpec(name=name, encoder_tokens=encoder_tokens, **TINY), layers


def make_model(*groups: tuple[LayerSpec, int]) -> ModelSpec:
    return ModelSpec.of("toy", groups)


def make_tree(
    *groups: tuple[LayerSpec, int], num_large: int = 64, tokens_per_page: int = 1,
) -> tuple[TwoLevelAllocator, TypedRadixTree]:
    layout = plan_layout(make_model(*groups), tokens_per_page)
    alloc = TwoLevelAllocator(layout, num_large)
    return alloc, TypedRadixTree(alloc)


def toks(n: int, base: int = 0) -> list[int]:
    """n distinct token ids starting at `base` (paths from different bases never share a first token)."""
    return list(range(base, base + n))


def states_at(n_pages: int, where: dict[int, int]) -> list[int | None]:
    """Aligned STATE entries: `where` maps page index -> state page id, None elsewhere."""
    return [where.get(i) for i in range(n_pages)]


def assert_free_pool(alloc: TwoLevelAllocator) -> None:
    alloc.check_integrity()
    assert alloc.large_pages_free == alloc.pool.total, "large pages still carved"


def flat(pages: Sequence[int | None]) -> list[int]:
    return [p for p in pages if p is not None]
