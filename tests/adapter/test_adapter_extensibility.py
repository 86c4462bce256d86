"""A new layer type reaches the server's tables with one spec, one policy and one row of adapter/types.py.

The toy type keeps the last `span` tokens (a window of its own policy and name). Registered as a PAIRED type,
build.py gives it sglang's SWA pool and allocator, the start-up capacities count its window, and sglang's own
calls (prefill, hit, decode, window release, finish, eviction, flush) run over it with integrity after every
step, as tests/core/test_extensibility.py shows for the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
from adapterkit import (
    GEO,
    _assert_all_free,
    _assert_integrity,
    _make_buffer,
    _make_layers,
    _make_req,
    _make_rig_of,
    admit,
    decode,
    evict,
    extend,
    finish,
    flush,
    own_pages,
    row,
    slide,
)
from sglang.srt.mem_cache.allocator.swa import SWATokenToKVPoolAllocator
from sglang.srt.mem_cache.swa_memory_pool import SWAKVPool

from sglang_jenga.adapter.build import _capacities, build_pools
from sglang_jenga.adapter.types import Role, RoleRow, SglangTypes, register_role
from sglang_jenga.core import AttentionSpec, FullAttentionSpec, LayerSpec, Policy, SlidingWindowSpec, register_policy

SPAN = 3


@dataclass(frozen=True, kw_only=True)
class RecentSpec(AttentionSpec):
    """Toy attention over the last `span` tokens."""

    name: str = "recent"
    span: int = SPAN
    policy: ClassVar[str] = "toy_recent_tokens"


@register_policy("toy_recent_tokens")
class RecentPolicy(Policy):
    def needed_pages(self, hit_pages: int) -> range:
        assert isinstance(self.spec, RecentSpec)
        p = self.tokens_per_page
        return range(max(0, hit_pages * p - self.spec.span) // p, hit_pages)

    def releasable_pages(self, computed_tokens: int) -> range:
        assert isinstance(self.spec, RecentSpec)
        return range(max(0, computed_tokens - self.spec.span) // self.tokens_per_page)


def _span(spec: LayerSpec) -> int:
    assert isinstance(spec, RecentSpec)
    return spec.span


register_role("toy_recent_tokens", RoleRow(Role.PAIRED, _span))

# full attention: 2 layers, 16 B/token; the toy type: 3 layers, 24 B/token -> 48 B large pages, 3 full or 2 toy
LAYERS = ((FullAttentionSpec(**GEO), [0, 2]), (RecentSpec(**GEO), [1, 3, 4]))


def test_toy_type_gets_sglangs_swa_pieces() -> None:
    layers = _make_layers(*LAYERS)
    jenga = _make_buffer(layers, 20)
    assert jenga.types == SglangTypes("full", paired="recent", window_tokens=SPAN)
    pools = build_pools(jenga, layers, "cpu")
    assert isinstance(pools.pool, SWAKVPool) and isinstance(pools.allocator, SWATokenToKVPoolAllocator)
    assert pools.pool.swa_layer_nums == 3 and pools.allocator.size_swa == 40
    # the start-up capacity keeps one request's window (SPAN + 1 toy tokens, 2 large pages) beside n full
    # tokens: ceil(n / 3) + 2 <= 20 large pages -> n = 54; the toy type's slots: 20 x 2
    assert _capacities(jenga) == (54, 40)


def test_toy_type_serves_a_request_lifecycle() -> None:
    rig = _make_rig_of("recent", _make_layers(*LAYERS), num_large=24, req_slots=4, window=SPAN)
    a = _make_req(rig, list(range(10)))
    assert admit(rig, a) == 0
    extend(rig, [(a, 6)])
    _assert_integrity(rig, [a])
    extend(rig, [(a, 10)])
    _assert_integrity(rig, [a])

    b = _make_req(rig, list(range(8)) + [50])
    assert admit(rig, b) == 8  # the toy policy's hit at 8 needs the toy pages of tokens 5..7: cached
    extend(rig, [(b, 9)])
    _assert_integrity(rig, [a, b])
    assert row(rig, b, 0, 8) == row(rig, a, 0, 8)
    for _ in range(4):
        decode(rig, [a, b])
        _assert_integrity(rig, [a, b])
    assert len(own_pages(rig, a, "recent")) == 4  # its 4 decode tokens (the prompt's are the tree's)

    slide(rig, [a])  # a has computed 14 tokens: its own toy pages of positions 10 (14 - 3 - 1) go back
    _assert_integrity(rig, [a, b])
    assert len(own_pages(rig, a, "recent")) == 3 and a.lock.swa_released

    finish(rig, a)
    finish(rig, b)
    _assert_integrity(rig)
    c = _make_req(rig, list(a.origin_input_ids) + list(a.output_ids)[:4] + [99])
    assert admit(rig, c) == 14  # a's whole sequence: its last 3 toy pages survived the release
    rig.cache.unlock(c.lock)
    got = evict(rig, full=1000, swa=1000)
    assert got.num_tokens_evicted == 19 and rig.manager.tree.cached_pages == [0, 0]
    flush(rig)
    _assert_all_free(rig)


def test_a_type_without_a_role_fails_at_start_up() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Unmapped(AttentionSpec):
        name: str = "unmapped"
        policy: ClassVar[str] = "toy_recent_tokens_unmapped"

    register_policy("toy_recent_tokens_unmapped")(RecentPolicy)
    with pytest.raises(ValueError, match="has no sglang role; add one with .*register_role"):
        _make_buffer(_make_layers((FullAttentionSpec(**GEO), [0]), (Unmapped(**GEO), [1])), 4)
    with pytest.raises(ValueError, match="both play sglang's paired role"):
        _make_buffer(_make_layers((FullAttentionSpec(**GEO), [0]), (RecentSpec(**GEO), [1]),
                                  (SlidingWindowSpec(window=2, **GEO), [2])), 4)
    with pytest.raises(ValueError, match="already has the sglang role paired"):
        register_role("toy_recent_tokens", RoleRow(Role.PAIRED, _span))
