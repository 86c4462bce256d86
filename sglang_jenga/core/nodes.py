"""Radix-tree nodes and the result types of the tree's operations."""

from __future__ import annotations

from array import array
from collections.abc import Hashable
from typing import NamedTuple, cast


class Node:
    """A span of tokens [start, end) on one path of the tree (a whole number of pages; `tokens` an int64
    array, so spans compare as memory).

    `pages[t]` (TOKENS and STATE types) is aligned with the span: entry i is page index start//P + i, None
    where type t holds nothing there (a tombstone; the node stays for the other types). STATE entries hold the
    state after that page. REQUEST-type pages live only on the key root, in `req_pages[t]`.
    `held[t]` counts the pages type t holds here. `time[t]` is the last access of type t's pages here;
    `last_access` the node's (its subtree's) last access. `lock[t]` counts requests that need type t's pages
    here; `ref` counts requests whose path runs through here (a node with ref > 0 is never removed or
    truncated). `tag` marks the node as the top of type locks (it moves to the upper half on a split so unlock
    walks stay exact).
    """

    __slots__ = ("nid", "parent", "root", "extra_key", "children", "tokens", "start", "pages", "req_pages",
                 "held", "time", "last_access", "lock", "ref", "tag", "alive")

    def __init__(self, nid: int, parent: Node | None, extra_key: Hashable, tokens: array[int], start: int,
                 num_types: int) -> None:
        self.nid = nid
        self.parent = parent
        self.root: Node = self if parent is None else parent.root
        self.extra_key = extra_key
        self.children: dict[Hashable, Node] = {}
        self.tokens = tokens
        self.start = start
        self.pages: list[list[int | None]] = [[] for _ in range(num_types)]
        self.req_pages: list[list[int]] | None = [[] for _ in range(num_types)] if parent is None else None
        self.held = [0] * num_types  # pages held per type (non-None entries, or request pages)
        self.time = [0] * num_types
        self.last_access = 0
        self.lock = [0] * num_types
        self.ref = 0
        self.tag = object()
        self.alive = True

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def present(self, t: int) -> list[int]:
        """Type t's pages held here (aligned entries that are not None, or the key root's request pages)."""
        if self.req_pages is not None and self.req_pages[t]:
            return list(self.req_pages[t])
        pages = self.pages[t]
        if self.held[t] == len(pages):
            return cast(list[int], pages[:])
        return [p for p in pages if p is not None]

    def count(self, t: int) -> int:
        """Pages of type t held here. O(1)."""
        return self.held[t]

    def __repr__(self) -> str:
        return f"Node#{self.nid}[{self.start},{self.end})"


class TypeHit(NamedTuple):
    """Pages of one type a hit needs: `pages[i]` is page index `first_page + i` of the sequence (for STATE
    types the single state after page `first_page`; for REQUEST types the encoder pages, first_page 0)."""

    first_page: int
    pages: tuple[int, ...]


class MatchResult(NamedTuple):
    """Longest prefix every type can serve. `node` ends at `hit_tokens` (the key root when 0); lock it to
    protect the pages. `node` is None only when nothing is cached under the extra key."""

    hit_tokens: int
    node: Node | None
    pages: dict[str, TypeHit]


class InsertResult(NamedTuple):
    """`node` ends at the inserted length; `duplicates_freed` are caller pages the tree already had
    (freed)."""

    node: Node
    new_tokens: int
    duplicates_freed: dict[str, list[int]]


class EvictResult(NamedTuple):
    """What an eviction freed: bytes of small pages, large pages returned to the pool, page ids per type."""

    bytes_freed: int
    large_pages_freed: int
    pages: dict[str, list[int]]


class TreeStats(NamedTuple):
    num_nodes: int
    cached_pages: dict[str, int]
    locked_pages: dict[str, int]
    cached_bytes: int
    evictable_bytes: int
    protected_bytes: int


class LockHandle:
    """What `TypedRadixTree.lock` locked: per type the tag of the topmost locked node (None: nothing)."""

    __slots__ = ("node", "tags")

    def __init__(self, node: Node, tags: list[object | None]) -> None:
        self.node: Node | None = node
        self.tags = tags


class FreedPages:
    """Accumulates pages freed during one eviction (per type index)."""

    __slots__ = ("pages", "bytes", "large_pages")

    def __init__(self, num_types: int) -> None:
        self.pages: list[list[int]] = [[] for _ in range(num_types)]
        self.bytes = 0
        self.large_pages = 0
