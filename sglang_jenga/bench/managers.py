"""What the replay scheduler needs from a memory manager, and the state of one request it replays.

A manager owns one byte budget: its allocator(s) and its prefix cache. The scheduler (replay.py) calls, in this
order per request: `admit` (prefill, possibly in several chunks, reusing a cached prefix), `decode` once per
step for the whole running batch, then `finish` (cache the sequence, release the rest) or `retract` (release
without caching the decode part). Every call mutates only the manager and the `Seq.state` it owns.

Bytes in use and waste (`footprint`): for one running request, `held_bytes` are the bytes the manager keeps
for it and no one else can use while it runs (its own pages plus the cached-prefix pages its lock pins, per
layer type), `readable_bytes` the part of those its next decode steps can read (profiles.readable_bytes). A
request sharing a prefix counts the shared pages in its own footprint (so shared pages count once per reader
in both terms).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from sglang_jenga.core import ModelSpec

from .traces import TraceRequest


class Footprint(NamedTuple):
    """Bytes a running request holds and the part of them its next decode steps can read."""

    held_bytes: int
    readable_bytes: int


class PoolUsage(NamedTuple):
    """Pool-wide bytes. `bytes_free`: allocatable without evicting; `bytes_cached`: held by the prefix cache
    (locked or not); `bytes_holes`: free bytes inside partly used pages (and padding) that only their own type
    can use."""

    bytes_total: int
    bytes_free: int
    bytes_cached: int
    bytes_holes: int


@dataclass
class Seq:
    """A request being replayed. `kv_len` text tokens have KV (positions [0, kv_len)); `generated` output
    tokens exist (the newest one has no KV yet), so kv_len == prompt_len + generated - 1 while it runs.
    `state` belongs to the manager."""

    req: TraceRequest
    tokens: np.ndarray
    image_key: str | None
    order: int
    kv_len: int = 0
    generated: int = 0
    state: Any = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.generated >= self.req.output_len

    @property
    def image_tokens(self) -> int:
        return self.req.image_tokens


class Manager(ABC):
    """A memory manager under replay (module docstring). `max_running` caps the running batch."""

    name: str
    model: ModelSpec
    max_running: int

    @abstractmethod
    def admit(self, seq: Seq, kv_len: int) -> int | None:
        """Prefill `seq.tokens[:kv_len]` (and its image), reusing the longest usable cached prefix; returns the
        hit in text tokens, or None when memory runs out (evicting the cache first): then everything this call
        allocated for `seq` is released again (prefill chunks it already cached stay cached)."""

    @abstractmethod
    def decode(self, batch: list[Seq]) -> bool:
        """One KV slot for position `kv_len` of every request in `batch` (after dropping what sliding windows
        no longer read), evicting the cache if needed. False, with nothing allocated, if it does not fit."""

    @abstractmethod
    def finish(self, seq: Seq) -> None:
        """Cache the request's `kv_len` tokens and release what it held."""

    @abstractmethod
    def retract(self, seq: Seq) -> None:
        """Release what the request held; only its already cached prefill stays cached."""

    @abstractmethod
    def headroom_ok(self, num_requests: int, tokens_each: int) -> bool:
        """Whether free + evictable memory covers `tokens_each` more tokens for each of `num_requests`."""

    @abstractmethod
    def footprint(self, seq: Seq) -> Footprint:
        """Held and readable bytes of a running request (module docstring)."""

    @abstractmethod
    def usage(self) -> PoolUsage:
        """Pool-wide byte counters."""

    @abstractmethod
    def check(self, running: list[Seq]) -> None:
        """Assert the manager's structures are consistent with `running` (expensive; tests)."""

    @abstractmethod
    def drain(self) -> bool:
        """Evict the whole cache (nothing may be running); True iff every byte is free again."""

    def describe(self) -> dict[str, Any]:
        """Pool geometry for the report."""
        return {}
