"""Integrity checks of the radix tree and of page accounting between allocator, tree and running requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .nodes import Node

if TYPE_CHECKING:
    from .radix import TypedRadixTree


def check_tree(tree: TypedRadixTree, held: Mapping[str, Sequence[int]] | None = None) -> None:
    """Assert: tree structure is consistent, every page is held by exactly one node, flagged and allocated,
    full-attention lists have no holes, lock and ref counts are consistent, counters match a recount. With
    `held` (pages running requests own outside the tree), also: per type, allocator used == cached + held with
    no page in both. O(nodes + pages)."""
    n = len(tree.names)
    counts, locked, nodes = [0] * n, [0] * n, 0
    seen: list[set[int]] = [set() for _ in range(n)]
    for key, root in tree._roots.items():
        assert root.parent is None and root.root is root and root.extra_key == key and not root.tokens
    for node in tree.iter_nodes():
        nodes += 1
        _check_node(tree, node, counts, locked, seen)
    assert nodes == tree.num_nodes, f"node count {nodes} != {tree.num_nodes}"
    for branch in tree._pins:
        assert branch.alive and branch.ref > 0, f"{branch}: pinned with no request running below it"
    assert counts == tree.cached_pages, f"cached pages {counts} != {tree.cached_pages}"
    assert locked == tree.locked_pages, f"locked pages {locked} != {tree.locked_pages}"
    for t in range(n):
        assert tree._cached[t].count(1) == counts[t], f"{tree.names[t]}: cached flags out of sync"
    if held is not None:
        check_accounting(tree, held)


def _check_node(tree: TypedRadixTree, node: Node, counts: list[int], locked: list[int],
                seen: list[set[int]]) -> None:
    P = tree.P
    assert node.alive and node.ref >= 0
    parent = node.parent
    if parent is not None:
        assert node.tokens and len(node.tokens) % P == 0, f"{node}: span not whole pages"
        assert parent.children.get(tree._key(node.tokens, 0)) is node, f"{node}: wrong child key"
        assert node.start == parent.end and node.root is parent.root and node.req_pages is None
        assert node.extra_key == node.root.extra_key and parent.ref >= node.ref
    for child in node.children.values():
        assert child.parent is node
    for t in range(len(tree.names)):
        assert node.lock[t] >= 0 and (node.lock[t] == 0 or node.ref > 0), f"{node}: lock without ref"
        if t in tree.aligned:
            assert len(node.pages[t]) == len(node.tokens) // P, f"{node}: {tree.names[t]} list length"
            assert not (tree.policies[t].leaf_only and None in node.pages[t]), f"{node}: hole in full pages"
        alloc = tree.allocator.types[t]
        for p in node.present(t):
            assert p not in seen[t], f"{tree.names[t]} page {p} cached twice"
            seen[t].add(p)
            assert tree._cached[t][p], f"{tree.names[t]} page {p} held by {node} but not flagged"
            assert alloc.is_used(p), f"{tree.names[t]} page {p} cached but free in the allocator"
        assert node.count(t) == len(node.present(t)), f"{node}: {tree.names[t]} held count"
        counts[t] += node.count(t)
        locked[t] += node.count(t) if node.lock[t] else 0


def check_accounting(tree: TypedRadixTree, held: Mapping[str, Sequence[int]]) -> None:
    """Per type: pages used in the allocator == pages cached by the tree + pages `held` by requests,
    disjoint."""
    for t, name in enumerate(tree.names):
        mine = set(held.get(name, ()))
        assert len(mine) == len(held.get(name, ())), f"{name}: a request page is listed twice"
        assert not any(tree._cached[t][p] for p in mine), f"{name}: page both held by a request and cached"
        alloc = tree.allocator.types[t]
        assert all(alloc.is_used(p) for p in mine), f"{name}: a held page is free in the allocator"
        assert alloc.pages_used == len(mine) + tree.cached_pages[t], (
            f"{name}: used {alloc.pages_used} != held {len(mine)} + cached {tree.cached_pages[t]}")
