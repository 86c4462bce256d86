"""Per-type cache policies: what a prefix hit needs, what a running request may release early.

Everything is in whole pages of P tokens. A hit of `h` pages means the request reuses tokens [0, h*P) and
computes from token h*P on. Hook contract (what lets the tree and evictor stay generic):
  * `needed_pages(h)` is empty or `range(s(h), h)` with s non-decreasing in h ("suffix-shaped"): a hit needs
    a run of pages that ends at the hit point. So if page j is missing, no hit in (j, h] can be served.
  * STATE types index their pages by position: page index i holds the state after token (i+1)*P.
  * `releasable_pages(L)` is the prefix of pages a request that has computed L tokens will never read again.

Rules (W = window, C = chunk, both in tokens; conservative by one token: a token is taken to read itself and
the W tokens before it):
  full            needs range(0, h)                                  releases nothing
  sliding_window  needs pages covering tokens [h*P - W, h*P)         releases pages below token L - W
  chunked_local   needs pages covering [h*P // C * C, h*P)           releases pages below token L // C * C
  mamba           needs range(h - 1, h): the state at token h*P      releases nothing (states are copied)
  cross_attention needs no token pages; its encoder pages are keyed by the request's extra key (image hash)

Example, P=4, W=6: a hit of 5 pages (20 tokens) needs tokens [14, 20) = pages 3, 4 -> range(3, 5); a request
at L=23 tokens may release tokens below 17: pages 0..3 -> range(0, 4).

New types: subclass `Policy`, decorate with `@register_policy("name")`, and name it in the spec's `policy`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from .specs import (
    ChunkedLocalSpec,
    CrossAttentionSpec,
    LayerSpec,
    MambaSpec,
    PageKind,
    SlidingWindowSpec,
    ceil_div,
)

_REGISTRY: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a policy available to specs whose `policy` class variable is `name`."""

    def deco(cls: type[Policy]) -> type[Policy]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy {name!r} already registered by {_REGISTRY[name].__name__}")
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def make_policy(spec: LayerSpec, tokens_per_page: int) -> Policy:
    """The registered policy for `spec` at `tokens_per_page` (KeyError if the spec names an unknown
    policy)."""
    try:
        cls = _REGISTRY[spec.policy]
    except KeyError:
        raise KeyError(f"no policy registered as {spec.policy!r} (type {spec.name!r})") from None
    return cls(spec, tokens_per_page)


def registered_policies() -> tuple[str, ...]:
    return tuple(_REGISTRY)


class Policy:
    """Hit/release rules of one layer type (see module docstring). Immutable; every method is pure.

    `leaf_only` types need every page before the hit point (full attention); the tree never leaves holes in
    them and drops their pages only by removing or truncating a leaf.
    """

    registry_name: ClassVar[str] = ""
    leaf_only: ClassVar[bool] = False

    def __init__(self, spec: LayerSpec, tokens_per_page: int) -> None:
        if tokens_per_page <= 0:
            raise ValueError("tokens_per_page must be positive")
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind
        self.tokens_per_page = tokens_per_page

    def needed_pages(self, hit_pages: int) -> range:
        """Pages a hit of `hit_pages` pages needs from the cache (suffix-shaped, see module docstring)."""
        return range(0, hit_pages)

    def releasable_pages(self, computed_tokens: int) -> range:
        """Pages [0, n) a running request with `computed_tokens` computed tokens may free now."""
        return range(0)

    def pages_for(self, num_tokens: int) -> int:
        """Pages one request needs for `num_tokens` tokens (encoder tokens for REQUEST types)."""
        return ceil_div(num_tokens, self.tokens_per_page)

    def max_hit(self, entries: Sequence[int | None], limit: int, offset: int = 0) -> int:
        """Largest h <= limit such that every page in needed_pages(h) is present (not None).

        `entries[i]` is page index `offset + i`; pages below `offset` count as present. One backward scan:
        a missing page j rules out every hit that needs it, so the candidate drops to h = j and the scan
        goes on below j; pages found present are never looked at again. O(limit - result) without
        copying, so a long run of tombstones costs one step per page.
        """
        h = limit
        while h > 0:
            need = self.needed_pages(h)
            lo = max(need.start, offset)
            j = need.stop - 1
            while j >= lo and entries[j - offset] is not None:
                j -= 1
            if j < lo:
                return h
            h = j
        return 0


@register_policy("full")
class FullAttentionPolicy(Policy):
    """Full attention: a hit needs every page before it."""

    leaf_only = True

    def max_hit(self, entries: Sequence[int | None], limit: int, offset: int = 0) -> int:
        seg = entries[: max(0, limit - offset)]
        return limit if None not in seg else offset + seg.index(None)


@register_policy("sliding_window")
class SlidingWindowPolicy(Policy):
    """Sliding window of `spec.window` tokens."""

    def __init__(self, spec: LayerSpec, tokens_per_page: int) -> None:
        super().__init__(spec, tokens_per_page)
        assert isinstance(spec, SlidingWindowSpec)
        self.window = spec.window

    def needed_pages(self, hit_pages: int) -> range:
        p = self.tokens_per_page
        return range(max(0, hit_pages * p - self.window) // p, hit_pages)

    def releasable_pages(self, computed_tokens: int) -> range:
        return range(max(0, computed_tokens - self.window) // self.tokens_per_page)


@register_policy("chunked_local")
class ChunkedLocalPolicy(Policy):
    """Chunked local attention with chunks of `spec.chunk` tokens."""

    def __init__(self, spec: LayerSpec, tokens_per_page: int) -> None:
        super().__init__(spec, tokens_per_page)
        assert isinstance(spec, ChunkedLocalSpec)
        self.chunk = spec.chunk

    def needed_pages(self, hit_pages: int) -> range:
        p = self.tokens_per_page
        return range(hit_pages * p // self.chunk * self.chunk // p, hit_pages)

    def releasable_pages(self, computed_tokens: int) -> range:
        return range(computed_tokens // self.chunk * self.chunk // self.tokens_per_page)


@register_policy("mamba")
class MambaPolicy(Policy):
    """Recurrent state: a hit at h pages needs the state cached at token h*P (page index h - 1).

    States are cached every `checkpoint_interval` tokens and at the end of a sequence; the interval must be a
    multiple of P so checkpoints fall on page boundaries.
    """

    def __init__(self, spec: LayerSpec, tokens_per_page: int) -> None:
        super().__init__(spec, tokens_per_page)
        assert isinstance(spec, MambaSpec)
        if spec.checkpoint_interval % tokens_per_page:
            raise ValueError(f"{spec.name}: checkpoint interval {spec.checkpoint_interval} is not a multiple "
                             f"of tokens_per_page {tokens_per_page}")
        self.checkpoint_interval = spec.checkpoint_interval

    def needed_pages(self, hit_pages: int) -> range:
        return range(hit_pages - 1, hit_pages) if hit_pages > 0 else range(0)

    def pages_for(self, num_tokens: int) -> int:
        return 1

    def is_checkpoint(self, num_tokens: int) -> bool:
        """Whether the state after `num_tokens` tokens is one the cache keeps (0 < num_tokens, on the
        interval)."""
        return num_tokens > 0 and num_tokens % self.checkpoint_interval == 0

    def max_hit(self, entries: Sequence[int | None], limit: int, offset: int = 0) -> int:
        for h in range(limit, offset, -1):
            if entries[h - 1 - offset] is not None:
                return h
        return min(limit, offset)


@register_policy("cross_attention")
class CrossAttentionPolicy(Policy):
    """Cross-attention: encoder pages per request, keyed by the extra key; they never limit the token hit."""

    def __init__(self, spec: LayerSpec, tokens_per_page: int) -> None:
        super().__init__(spec, tokens_per_page)
        assert isinstance(spec, CrossAttentionSpec)
        assert spec.kind is PageKind.REQUEST
        self.encoder_tokens = spec.encoder_tokens

    def needed_pages(self, hit_pages: int) -> range:
        return range(0)

    def max_hit(self, entries: Sequence[int | None], limit: int, offset: int = 0) -> int:
        return limit
