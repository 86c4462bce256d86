"""Prefix-subset evictor: one LRU over (node, type) units with timestamps aligned across types.

Units. A *drop* unit is (node, t) for a type that may leave holes (sliding window, chunked, Mamba states): it
frees t's pages at the node and leaves a tombstone. A *removal* unit is an unreferenced leaf (or childless key
root): it frees every type's pages there. Full-attention (`leaf_only`) pages go only with removals, so a full
path never has holes; cross-attention encoder pages go with their key root, after its last child.

Time. Every match/insert gets one clock tick `now`; the pages the hit needs in every type get time `now`
(tree._touch): tokens at the same position of the same hit age together, so one type cannot cap the hit length
by evicting early. Pages the hit does not need (sliding-window pages before the window, Mamba states between
checkpoints) keep their older time and are evicted independently of full-attention pages.

Order. Oldest time first; at equal time the deeper unit first (larger end), removal before drop, then type
index and node id. Among the units sharing the oldest time, the one that returns the most whole large pages to
the common pool goes first (counted exactly with the allocator's per-large-page use counts).

Zero-value pages. A leaf whose tail no hit can use (e.g. its end state or end window was dropped) is truncated
to its last servable hit point, or removed when it has none, cascading upwards; this runs after every drop or
removal, and for leaves marked dirty (insert, unlock) at the start of every evict/prune call.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from .nodes import EvictResult, FreedPages, Node

if TYPE_CHECKING:
    from .radix import TypedRadixTree

REMOVE, DROP = 0, 1
_Entry = tuple[int, int, int, int, int, int, Node]


class Evictor:
    """Eviction state of one tree: a lazy min-heap of units (stale entries skipped on pop) and dirty
    leaves."""

    GROUP_CAP = 64

    def __init__(self, tree: TypedRadixTree) -> None:
        self.tree = tree
        self._heap: list[_Entry] = []
        self._seq = 0
        self._dirty: dict[Node, None] = {}

    # ------------------------------------------------------------------------ notifications from the tree
    def push_partial(self, node: Node, t: int) -> None:
        """(node, t) may have become evictable at its current time."""
        if not self.tree.policies[t].leaf_only and t not in self.tree.request and node.count(t):
            self._push(node.time[t], node, DROP, t)

    def push_removal(self, node: Node) -> None:
        """`node` may have become a removable leaf at its current last_access."""
        self._push(node.last_access, node, REMOVE, -1)

    def push_node(self, node: Node) -> None:
        for t in self.tree.aligned:
            self.push_partial(node, t)
        if not node.children:
            self.push_removal(node)

    def mark_dirty(self, node: Node) -> None:
        """Check `node` for zero-value pages at the next evict/prune."""
        self._dirty[node] = None

    def on_unref(self, node: Node) -> None:
        if not node.children:
            self.push_removal(node)
            self.mark_dirty(node)

    # ------------------------------------------------------------------------------------------ eviction
    def evict(self, num_bytes: int) -> EvictResult:
        """Free unlocked cached pages in eviction order (module docstring) until at least `num_bytes`
        small-page bytes are freed or nothing evictable is left. Zero-value pages are freed first. Mutates the
        tree and the allocator; never touches locked pages. O(log heap + pages freed) per unit."""
        return self._evict_until(lambda freed: freed.bytes >= num_bytes)

    def evict_for(self, name: str, num_pages: int) -> EvictResult:
        """Evict (same order as `evict`) until the allocator can hand out `num_pages` pages of type `name`
        (free slots of that type + whole free large pages), or nothing evictable is left."""
        alloc = self.tree.allocator.of(name)
        return self._evict_until(lambda freed: alloc.available() >= num_pages)

    def _evict_until(self, done: Callable[[FreedPages], bool]) -> EvictResult:
        freed = FreedPages(len(self.tree.names))
        self._prune_dirty(freed)
        while not done(freed):
            entry = self._pop_best()
            if entry is None:
                break
            self._apply(entry, freed)
        return self._result(freed)

    def prune(self) -> EvictResult:
        """Free only zero-value pages of dirty leaves."""
        freed = FreedPages(len(self.tree.names))
        self._prune_dirty(freed)
        return self._result(freed)

    def _apply(self, entry: _Entry, freed: FreedPages) -> None:
        node, rank, t = entry[6], entry[2], entry[3]
        if rank == REMOVE:
            self._prune_chain(self.tree._remove_leaf(node, freed), freed)
        else:
            self.tree._drop_type(node, t, freed)
            self._prune_chain(node, freed)

    def _prune_chain(self, node: Node | None, freed: FreedPages) -> None:
        """Truncate or remove unreferenced leaves whose tail no hit can use, walking up while leaves empty."""
        tree = self.tree
        while node is not None and node.alive and not node.children and node.ref == 0:
            if node.req_pages is not None:
                if not any(node.req_pages[t] for t in tree.request):
                    tree._remove_leaf(node, freed)
                return
            start, h = node.start // tree.P, tree._last_servable(node)
            if h > start:
                if h < node.end // tree.P:
                    tree._truncate(node, h - start, freed)
                return
            node = tree._remove_leaf(node, freed)

    def _prune_dirty(self, freed: FreedPages) -> None:
        nodes = list(self._dirty)
        self._dirty.clear()
        for node in nodes:
            self._prune_chain(node, freed)

    # ------------------------------------------------------------------------------------------ the heap
    def _push(self, time: int, node: Node, rank: int, t: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, -node.end, rank, t, node.nid, self._seq, node))
        if len(self._heap) > 4 * self.tree.num_nodes * (len(self.tree.names) + 1) + 1024:
            self._rebuild()

    def _rebuild(self) -> None:
        """Drop stale entries: one entry per live unit. O(nodes * types); amortised over >= 3x as many
        pushes."""
        heap: list[_Entry] = []
        for node in self.tree.iter_nodes():
            for t in self.tree.aligned:
                if not self.tree.policies[t].leaf_only and node.count(t):
                    self._seq += 1
                    heap.append((node.time[t], -node.end, DROP, t, node.nid, self._seq, node))
            if not node.children:
                self._seq += 1
                heap.append((node.last_access, -node.end, REMOVE, -1, node.nid, self._seq, node))
        heapq.heapify(heap)
        self._heap = heap

    def _valid(self, entry: _Entry) -> bool:
        time, _, rank, t, _, _, node = entry
        if not node.alive:
            return False
        if rank == REMOVE:
            return not node.children and node.ref == 0 and node.last_access == time
        return node.lock[t] == 0 and node.time[t] == time and node.count(t) > 0

    def _pop_best(self) -> _Entry | None:
        """Pop the next unit: among the valid units of the oldest time, the one freeing most whole large
        pages."""
        heap = self._heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        if not heap:
            return None
        oldest, group, seen = heap[0][0], list[_Entry](), set[tuple[int, int, int]]()
        while heap and heap[0][0] == oldest and len(group) < self.GROUP_CAP:
            entry = heapq.heappop(heap)
            unit = (entry[2], entry[3], entry[4])
            if unit not in seen and self._valid(entry):
                seen.add(unit)
                group.append(entry)
        best = 0
        if len(group) > 1:
            best = max(range(len(group)), key=lambda i: (self._whole_large(group[i]), -i))
        for i, entry in enumerate(group):
            if i != best:
                heapq.heappush(heap, entry)
        return group[best]

    def _whole_large(self, entry: _Entry) -> int:
        """Large pages that would return to the common pool if this unit alone were freed."""
        node, rank = entry[6], entry[2]
        total = 0
        for t in range(len(self.tree.names)) if rank == REMOVE else (entry[3],):
            alloc = self.tree.allocator.types[t]
            counts = Counter(p // alloc.pages_per_large for p in node.present(t))
            total += sum(1 for lp, c in counts.items() if c == alloc.used_in_large(lp))
        return total

    def _result(self, freed: FreedPages) -> EvictResult:
        pages = {self.tree.names[t]: p for t, p in enumerate(freed.pages) if p}
        return EvictResult(freed.bytes, freed.large_pages, pages)
