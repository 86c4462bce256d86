"""A new layer type needs one spec class and one policy registered by name, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from corekit import assert_free_pool, full, make_model

from sglang_jenga.core import (
    AttentionSpec,
    Policy,
    TwoLevelAllocator,
    TypedRadixTree,
    plan_layout,
    register_policy,
    registered_policies,
)


@dataclass(frozen=True, kw_only=True)
class StridedSpec(AttentionSpec):
    """Toy attention over the last `span` pages only (like a window counted in pages)."""

    name: str = "strided"
    span: int = 2
    policy: ClassVar[str] = "toy_last_pages"


@register_policy("toy_last_pages")
class LastPagesPolicy(Policy):
    def needed_pages(self, hit_pages: int) -> range:
        assert isinstance(self.spec, StridedSpec)
        return range(max(0, hit_pages - self.spec.span), hit_pages)

    def releasable_pages(self, computed_tokens: int) -> range:
        assert isinstance(self.spec, StridedSpec)
        return range(max(0, computed_tokens // self.tokens_per_page - self.spec.span))


def test_toy_type_works_end_to_end() -> None:
    assert "toy_last_pages" in registered_policies()
    model = make_model(full(), (StridedSpec(kv_heads=1, head_dim=1, dtype_bytes=1), 3))
    layout = plan_layout(model, 2)
    assert layout.type("strided").page_bytes == 2 * 3 * 2  # P * layers * K+V bytes
    alloc = TwoLevelAllocator(layout, 16)
    tree = TypedRadixTree(alloc)
    f, s = alloc.alloc("full", 4, 1), alloc.alloc("strided", 4, 1)
    alloc.free("strided", s[:2])  # released early: only the last 2 pages are needed
    tree.insert(list(range(8)), {"full": f, "strided": [None, None, *s[2:]]})
    hit = tree.match(list(range(8)))
    assert (hit.hit_tokens, hit.pages["strided"]) == (8, (2, tuple(s[2:])))
    assert tree.match(list(range(6)) + [9, 9]).hit_tokens == 0
    tree.evict(10**9)
    assert_free_pool(alloc)


def test_registering_a_taken_name_fails() -> None:
    class Other(Policy):
        pass

    try:
        register_policy("full")(Other)
    except ValueError:
        return
    raise AssertionError("duplicate policy name accepted")
