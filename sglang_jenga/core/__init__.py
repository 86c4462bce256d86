"""Engine-agnostic core of sglang_jenga: layer-type specs, LCM layout, two-level allocator, per-type policies,
typed radix tree and prefix-subset evictor. Pure Python; imports nothing from sglang or torch.

Typical use (the adapter's view):

    layout = plan_layout(model, tokens_per_page=16)
    alloc = TwoLevelAllocator.for_bytes(layout, pool_bytes)
    tree = TypedRadixTree(alloc)
    hit = tree.match(tokens, extra_key)            # pages per type + the node to lock
    handle = tree.lock(hit.node)
    pages = alloc.alloc("full", n, owner=req_id)   # request-aware placement
    tree.insert(tokens, {"full": [...], "swa": [...]}, extra_key)
    tree.unlock(handle); alloc.close_owner(req_id)
    tree.evict(num_bytes)                           # when an alloc raises OutOfPagesError
"""

from .allocator import (
    AllocatorStats,
    LargePagePool,
    OutOfPagesError,
    SmallPageAllocator,
    TwoLevelAllocator,
    TypeStats,
)
from .evictor import Evictor
from .layout import DEFAULT_MAX_LARGE_PAGE_BYTES, Layout, PageLocation, TypeLayout, plan_layout
from .nodes import EvictResult, InsertResult, LockHandle, MatchResult, Node, TreeStats, TypeHit
from .policies import (
    ChunkedLocalPolicy,
    CrossAttentionPolicy,
    FullAttentionPolicy,
    MambaPolicy,
    Policy,
    SlidingWindowPolicy,
    make_policy,
    register_policy,
    registered_policies,
)
from .radix import TypedRadixTree
from .shapes import MODELS
from .specs import (
    AttentionSpec,
    ChunkedLocalSpec,
    CrossAttentionSpec,
    FullAttentionSpec,
    LayerGroup,
    LayerSpec,
    MambaSpec,
    ModelSpec,
    PageKind,
    SlidingWindowSpec,
    as_draft,
    gated_delta_net_state_bytes,
    mamba2_state_bytes,
)

__all__ = [
    "DEFAULT_MAX_LARGE_PAGE_BYTES", "MODELS", "AllocatorStats", "AttentionSpec", "ChunkedLocalPolicy",
    "ChunkedLocalSpec", "CrossAttentionPolicy", "CrossAttentionSpec", "EvictResult", "Evictor",
    "FullAttentionPolicy", "FullAttentionSpec", "InsertResult", "LargePagePool", "LayerGroup", "LayerSpec",
    "Layout", "LockHandle", "MambaPolicy", "MambaSpec", "MatchResult", "ModelSpec", "Node", "OutOfPagesError",
    "PageKind", "PageLocation", "Policy", "SlidingWindowPolicy", "SlidingWindowSpec", "SmallPageAllocator",
    "TreeStats", "TwoLevelAllocator", "TypeHit", "TypeLayout", "TypeStats", "TypedRadixTree", "as_draft",
    "gated_delta_net_state_bytes", "make_policy", "mamba2_state_bytes", "plan_layout", "register_policy",
    "registered_policies",
]
