"""Jenga under replay: the replay scheduler's calls translated into the core `KVCacheManager`'s, the same
manager (and the same per-request lifecycle) the sglang adapter drives in a server. One token per page (P = 1).

What this module adds is what sglang's scheduler keeps on its side, plus metrics:
  admit    match (at most kv_len - 1 tokens, so one token is computed), lock; the prefill must fit free large
           pages plus the evictable estimate (`KVCacheManager.fits`, `evictable_estimate`), as sglang's
           PrefillAdder checks its budget first; a live state page per state type (a copy of the hit state)
           and the image's encoder pages unless the key root has them; prefill in chunks of `chunk` tokens,
           each cached with a copy of the state at its end, the lock moved to it. The lock's state types are
           released at once: the request runs on its own live state, so cached states stay evictable.
  decode   `release_window` (out-of-window pages and the prefix window lock), then `alloc_step`.
  finish   `cache` the whole sequence with the live state handed over, then `close`.
  retract  `close`.
"""

from __future__ import annotations

from typing import Any

from sglang_jenga.core import KVCacheManager, ModelSpec, OutOfPagesError, PageKind, plan_layout

from .managers import Footprint, Manager, PoolUsage, Seq
from .profiles import readable_bytes


class JengaManager(Manager):
    """The core `KVCacheManager` over `pool_bytes` (module docstring). `Seq.state` is the request id."""

    def __init__(self, model: ModelSpec, pool_bytes: int, *, chunk: int = 8192, max_running: int = 2048,
                 name: str = "jenga") -> None:
        self.name, self.model, self.max_running, self.chunk = name, model, max_running, chunk
        self.layout = plan_layout(model, 1)
        self.kv = KVCacheManager(self.layout, self.layout.large_pages_for(pool_bytes))
        kinds = {t.name: t.kind for t in self.layout.types}
        self.state_types = [n for n, k in kinds.items() if k is PageKind.STATE]
        self.enc_types = [n for n, k in kinds.items() if k is PageKind.REQUEST]
        self.policies = dict(zip(self.kv.names, self.kv.tree.policies, strict=True))
        self.page_bytes = {t.name: t.page_bytes for t in self.layout.types}
        self._next_rid = 0
        self._enc_shared: dict[int, int] = {}  # rid -> encoder pages it reads from the key root

    # ------------------------------------------------------------------------------------------- admit
    def admit(self, seq: Seq, kv_len: int) -> int | None:
        self._next_rid += 1
        rid = self._next_rid
        tokens = seq.tokens[:kv_len].tolist()
        hit = self.kv.match(tokens[:kv_len - 1], seq.image_key)
        self.kv.open(rid, seq.image_key, hit.hit_tokens)
        self.kv.lock(rid, hit.node)
        seq.state = rid
        if not self._fits(kv_len - hit.hit_tokens, seq.image_tokens, hit.pages) or not self._admit_extras(
                rid, seq, hit.pages) or not self._prefill(rid, tokens, hit.hit_tokens):
            self.kv.close(rid)
            self._enc_shared.pop(rid, None)
            seq.state = None
            return None
        return hit.hit_tokens

    def _fits(self, extend: int, image_tokens: int, hit_pages: dict[str, Any]) -> bool:
        """Every full-attention page of the `extend` new tokens, a window (or chunk) plus one prefill chunk of
        each windowed type (the older ones go to the tree, evictable), a live state per state type and the
        image's encoder pages unless cached, against free large pages + the evictable estimate."""
        need = {}
        for name in self.kv.token_types:
            policy = self.policies[name]
            need[name] = extend if policy.leaf_only else min(extend, self._reach(name) + self.chunk)
        for name in self.state_types:
            need[name] = 1
        for name in self.enc_types:
            cached = hit_pages.get(name)
            if cached is None or not cached.pages:
                need[name] = self.policies[name].pages_for(image_tokens)
        return self.kv.fits(need, self.kv.evictable_estimate())

    def _reach(self, name: str) -> int:
        """Tokens a windowed type keeps behind the newest one (window, or chunk for chunked attention)."""
        spec = self.model.group(name).spec
        return int(getattr(spec, "window", 0) or getattr(spec, "chunk", 0))

    def _admit_extras(self, rid: int, seq: Seq, hit_pages: dict[str, Any]) -> bool:
        """Live state pages (the request runs on its own copy, so the lock on the cached ones goes) and,
        unless cached, the image's encoder pages."""
        for name in self.state_types:
            if not self._alloc(rid, name, 1):
                return False
        for name in self.enc_types:
            shared = hit_pages.get(name)
            if shared is not None and shared.pages:
                self._enc_shared[rid] = len(shared.pages)
            elif not self._alloc(rid, name, self.policies[name].pages_for(seq.image_tokens)):
                return False
        for name in self.state_types:  # copied into the live state: the cached one need not stay pinned
            self.kv.release_type(rid, name)
        return True

    def _alloc(self, rid: int, name: str, n: int) -> bool:
        try:
            self.kv.alloc(rid, name, n, evict=True)
            return True
        except OutOfPagesError:
            return False

    def _prefill(self, rid: int, tokens: list[int], cached: int) -> bool:
        """Chunked prefill from `cached` to len(tokens); each chunk is cached (with a copy of the state at its
        end) and the lock moved to it."""
        while cached < len(tokens):
            end = min(len(tokens), cached + self.chunk)
            try:
                self.kv.alloc_tokens(rid, end - cached, evict=True)
            except OutOfPagesError:
                return False
            copies: dict[str, int | None] = {}
            for name in self.state_types:  # a checkpoint at the chunk end, if a page can be had
                try:
                    copies[name] = self.kv.alloc(rid, name, 1, evict=True)[0]
                except OutOfPagesError:
                    copies[name] = None
            self._cache(rid, tokens[:end], copies)
            cached = end
        return True

    def _cache(self, rid: int, tokens: list[int], states: dict[str, int | None]) -> None:
        result = self.kv.cache(rid, tokens, states=states)
        self.kv.lock(rid, result.node)
        for name in self.state_types:
            self.kv.release_type(rid, name)

    # ------------------------------------------------------------------------------------------ decode
    def decode(self, batch: list[Seq]) -> bool:
        for s in batch:
            self.kv.release_window(s.state, s.kv_len)
        try:
            self.kv.alloc_step([s.state for s in batch], evict=True)
        except OutOfPagesError:
            return False
        return True

    # ------------------------------------------------------------------------------------ finish/retract
    def finish(self, seq: Seq) -> None:
        rid = seq.state
        held = self.kv.held(rid).pages
        live = {name: held[name][0] for name in self.state_types}
        self._cache(rid, seq.tokens[:seq.kv_len].tolist(), live)
        self.retract(seq)

    def retract(self, seq: Seq) -> None:
        self.kv.close(seq.state)
        self._enc_shared.pop(seq.state, None)
        seq.state = None

    # ------------------------------------------------------------------------------------------ metrics
    def headroom_ok(self, num_requests: int, tokens_each: int) -> bool:
        """`tokens_each` more tokens of every token type for each request fit free large pages + the evictable
        estimate."""
        need = dict.fromkeys(self.kv.token_types, num_requests * tokens_each)
        return self.kv.fits(need, self.kv.evictable_estimate())

    def footprint(self, seq: Seq) -> Footprint:
        rid = seq.state
        held = self.kv.held(rid)
        pinned_types = self.kv.locked_types(rid)
        total = 0
        for name in self.kv.token_types:
            own = sum(1 for p in held.pages[name] if p is not None)
            pinned = len(self.policies[name].needed_pages(held.start_tokens)) if name in pinned_types else 0
            total += (own + pinned) * self.page_bytes[name]
        total += sum(len(held.pages[n]) * self.page_bytes[n] for n in self.state_types)
        for name in self.enc_types:
            enc = len(held.pages[name]) or self._enc_shared.get(rid, 0) or self._enc_on_root(rid, name)
            total += enc * self.page_bytes[name]
        return Footprint(total, readable_bytes(self.model, seq.kv_len, seq.image_tokens))

    def _enc_on_root(self, rid: int, name: str) -> int:
        node = self.kv.locked_node(rid)
        if node is None or node.root.req_pages is None:
            return 0
        return len(node.root.req_pages[self.kv.names.index(name)])

    def usage(self) -> PoolUsage:
        stats = self.kv.allocator.stats()
        in_carved = sum(t.bytes_free_in_carved for t in stats.types)
        free = stats.large_pages_free * stats.large_page_bytes + in_carved
        return PoolUsage(stats.bytes_total, free, self.kv.tree.stats().cached_bytes, stats.bytes_wasted)

    def check(self, running: list[Seq]) -> None:
        assert sorted(s.state for s in running) == sorted(self.kv.open_requests()), "running != open requests"
        self.kv.check_integrity()

    def drain(self) -> bool:
        self.kv.evict_all()
        self.kv.check_integrity()
        return self.kv.allocator.large_pages_free == self.kv.allocator.pool.total

    def describe(self) -> dict[str, Any]:
        return {"large_page_bytes": self.layout.large_page_bytes, "large_pages": self.kv.allocator.pool.total,
                "pages_per_large": {t.name: t.pages_per_large for t in self.layout.types}}
