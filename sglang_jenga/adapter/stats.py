"""Live jenga statistics for `GET /server_info` (`internal_states[i]["jenga"]`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sglang_jenga.adapter.buffer import JengaBuffer


def jenga_stats(jenga: JengaBuffer, tree_cache: Any) -> dict[str, Any]:
    """Large pages total/free, per type the small-page bytes and pages used / cached / free, and the
    bytes wasted (free small pages stranded in partly used large pages, plus padding). With a speculative
    draft model, per type its `draft_layers` (stored in the type's rows after the target's) and the bytes of
    used pages they hold (`draft_bytes_used`)."""
    stats = jenga.allocator.stats()
    tree = getattr(tree_cache, "tree", None)
    cached = dict.fromkeys(jenga.layout.type_names, 0)
    evicted = dict(getattr(tree_cache, "pages_evicted", cached))
    if tree is not None and tree.allocator is jenga.allocator:
        cached.update(tree.stats().cached_pages)
    types = {}
    for t, geo in zip(stats.types, jenga.layout.types, strict=True):
        types[t.name] = {
            "small_page_bytes": geo.page_bytes,
            "pages_per_large_page": geo.pages_per_large,
            "layers": geo.num_layers,
            "pages_used": t.pages_used,
            "pages_cached": cached[t.name],
            "pages_evicted": evicted.get(t.name, 0),
            "pages_free": jenga.allocator.of(t.name).available(),
            "pages_free_in_carved": t.pages_free_in_carved,
            "large_pages_carved": t.large_pages_carved,
            "bytes_used": t.bytes_used,
            "draft_layers": jenga.draft_layers.get(t.name, 0),
            "draft_bytes_used": t.bytes_used * jenga.draft_layers.get(t.name, 0) // geo.num_layers,
        }
    return {
        "large_page_bytes": stats.large_page_bytes,
        "large_pages_total": stats.large_pages_total,
        "large_pages_free": stats.large_pages_free,
        "bytes_total": stats.bytes_total,
        "bytes_used": stats.bytes_used,
        "bytes_wasted": stats.bytes_wasted,
        "types": types,
    }


def decisions_digest(stats: dict[str, Any]) -> str:
    """A digest of what jenga decided, independent of byte sizes: large pages free and, per type, pages used,
    cached, evicted, free in carved large pages and large pages carved. The ranks of one tensor-parallel group
    and the stages of one pipeline run the same scheduler steps, so their digests must be equal at the same
    step. 12 hex digits."""
    keys = ("pages_used", "pages_cached", "pages_evicted", "pages_free_in_carved", "large_pages_carved")
    decided = [stats["large_pages_total"], stats["large_pages_free"],
               {name: [t[k] for k in keys] for name, t in sorted(stats["types"].items())}]
    return hashlib.sha256(json.dumps(decided).encode()).hexdigest()[:12]
