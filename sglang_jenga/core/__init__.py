"""Engine-agnostic core of sglang_jenga: layer-type specs, LCM layout, two-level allocator, per-type policies,
typed radix tree and prefix-subset evictor. Python, with the allocator's bookkeeping in C (`_pages.c`, built by the
set-up); imports nothing from sglang or torch.

Typical use (what the sglang adapter and the replay benchmark both do, through `KVCacheManager`):

    kv = KVCacheManager(plan_layout(model, tokens_per_page=1), num_large_pages)
    hit = kv.match(tokens, extra_key)              # pages per type + the node to lock
    kv.open(rid, extra_key, start=hit.hit_tokens); kv.lock(rid, hit.node)
    kv.alloc_tokens(rid, len(tokens) - hit.hit_tokens, evict=True)   # request-aware placement
    kv.alloc_step([rid, ...], evict=True)          # one decode step
    kv.release_window(rid, computed_tokens)        # out-of-window pages
    kv.cache(rid, tokens); kv.close(rid)           # finish (or only close: abort, retract)
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
from .manager import BatchPart, CapacityPlan, HeldPages, KVCacheManager
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
    "DEFAULT_MAX_LARGE_PAGE_BYTES", "MODELS", "AllocatorStats", "AttentionSpec", "BatchPart", "CapacityPlan",
    "ChunkedLocalPolicy", "ChunkedLocalSpec", "CrossAttentionPolicy", "CrossAttentionSpec", "EvictResult",
    "Evictor", "FullAttentionPolicy", "FullAttentionSpec", "HeldPages", "InsertResult", "KVCacheManager",
    "LargePagePool", "LayerGroup", "LayerSpec", "Layout", "LockHandle", "MambaPolicy", "MambaSpec", "MatchResult",
    "ModelSpec", "Node", "OutOfPagesError", "PageKind", "PageLocation", "Policy", "SlidingWindowPolicy",
    "SlidingWindowSpec", "SmallPageAllocator", "TreeStats", "TwoLevelAllocator", "TypeHit", "TypeLayout",
    "TypeStats", "TypedRadixTree", "as_draft", "gated_delta_net_state_bytes", "make_policy", "mamba2_state_bytes",
    "plan_layout", "register_policy", "registered_policies",
]
