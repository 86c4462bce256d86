"""Prefix-subset evictor: one LRU over (node, type) units with timestamps aligned across types.

Units. A *drop* unit is (node, t) for a type that may leave holes (sliding window, chunked, Mamba states): it
frees t's pages at the node and leaves a tombstone. A *removal* unit is an unreferenced leaf (or childless key
root): it frees every type's pages there. Full-attention (`leaf_only`) pages go only with removals, so a full
path never has holes; cross-attention encoder pages go with their key root, after its last child.

Time. Every match/insert gets one clock tick `now`; the pages the hit needs in every type get time `now`
(tree._touch): tokens at the same position of the same hit age together, so one type cannot cap the hit length
by evicting early. Pages the hit does not need (sliding-window pages before the window, Mamba states between
checkpoints) keep their older time and are evicted independently of full-attention pages. Branch points (nodes
with several children, where prompts diverged and will again): a match or insert passing through one also
refreshes what a hit there needs, if that hit is servable, and while requests run below it that part is locked
(tree._pin); so the window a question at a shared document's end needs is not the first thing the LRU drops.

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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

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

    def evict_until(self, done: Callable[[Sequence[int]], bool]) -> EvictResult:
        """Evict (same order as `evict`) until `done(pages_freed_per_type)` holds or nothing evictable is
        left; `done` sees the number of small pages freed so far per type (layout order), and may also read
        the allocator (e.g. to stop once a joint allocation of several types fits)."""
        return self._evict_until(lambda freed: done([len(p) for p in freed.pages]))

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
            self._prune_chain(self._remove_leaf(node, freed), freed)
        else:
            self._drop_type(node, t, freed)
            self._prune_chain(node, freed)

    def _prune_chain(self, node: Node | None, freed: FreedPages) -> None:
        """Truncate or remove unreferenced leaves whose tail no hit can use, walking up while leaves empty."""
        tree = self.tree
        while node is not None and node.alive and not node.children and node.ref == 0:
            if node.req_pages is not None:
                if not any(node.req_pages[t] for t in tree.request):
                    self._remove_leaf(node, freed)
                return
            start, h = node.start // tree.P, self._last_servable(node)
            if h > start:
                if h < node.end // tree.P:
                    self._truncate(node, h - start, freed)
                return
            node = self._remove_leaf(node, freed)

    def _prune_dirty(self, freed: FreedPages) -> None:
        nodes = list(self._dirty)
        self._dirty.clear()
        for node in nodes:
            self._prune_chain(node, freed)

    # --------------------------------------------------------- structural removal (mutates tree internals)
    def _release(self, t: int, pages: list[int], freed: FreedPages) -> None:
        tree = self.tree
        cached = tree._cached[t]
        for p in pages:
            cached[p] = 0
        tree.cached_pages[t] -= len(pages)
        freed.large_pages += tree.allocator.types[t].free(pages)
        freed.pages[t].extend(pages)
        freed.bytes += len(pages) * tree.page_bytes[t]

    def _drop_type(self, node: Node, t: int, freed: FreedPages) -> None:
        """Tombstone type t at `node` (unlocked for t): free its pages, keep the node for the other types."""
        tree = self.tree
        assert node.lock[t] == 0 and not tree.policies[t].leaf_only
        self._release(t, node.present(t), freed)
        node.pages[t] = [None] * len(node.pages[t])
        node.held[t] = 0

    def _truncate(self, node: Node, keep_pages: int, freed: FreedPages) -> None:
        """Cut an unreferenced leaf after its first `keep_pages` pages (>= 1), freeing the tail of every
        type."""
        tree = self.tree
        assert not node.children and node.ref == 0 and keep_pages >= 1
        for t in tree.aligned:
            tail = [p for p in node.pages[t][keep_pages:] if p is not None]
            self._release(t, tail, freed)
            node.held[t] -= len(tail)
            del node.pages[t][keep_pages:]
        del node.tokens[keep_pages * tree.P:]

    def _remove_leaf(self, node: Node, freed: FreedPages) -> Node | None:
        """Remove an unreferenced leaf (or childless key root) and free all its pages; returns the parent."""
        tree = self.tree
        assert not node.children and node.ref == 0 and node.alive
        for t in range(len(tree.names)):
            self._release(t, node.present(t), freed)
        parent = node.parent
        if parent is None:
            del tree._roots[node.extra_key]
        else:
            del parent.children[tree._key(node.tokens, 0)]
            if not parent.children:
                self.push_removal(parent)
        node.alive = False
        tree.num_nodes -= 1
        return parent

    def _last_servable(self, node: Node) -> int:
        """Largest hit (pages) in (start, end] of `node` that every type can serve, or <= start if none."""
        tree = self.tree
        P, s = tree.P, node.start // tree.P
        types = [t for t in tree.aligned if not tree.policies[t].leaf_only]
        if not types:
            return node.end // P
        offset = min(tree.policies[t].needed_pages(s + 1).start for t in types)
        chain, cur = [], node
        while cur is not node.root:
            chain.append(cur)
            if cur.start // P <= offset:
                break
            cur = cast(Node, cur.parent)
        chain.reverse()
        base, h = chain[0].start // P, node.end // P
        entries = {t: _concat(c.pages[t] for c in chain)[offset - base:] for t in types}
        while h > s:
            start = h
            for t in types:
                h = tree.policies[t].max_hit(entries[t], h, offset)
            if h == start:
                break
        return h

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
        removed = {e[4] for e in group if e[2] == REMOVE}
        # a drop is dominated by its own node's removal (which frees a superset): only score the rest
        candidates = [i for i, e in enumerate(group) if e[2] == REMOVE or e[4] not in removed]
        best = candidates[0]
        if len(candidates) > 1:
            best = max(candidates, key=lambda i: (self._whole_large(group[i]), -i))
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

def _concat(lists: Iterator[list[int | None]]) -> list[int | None]:
    out: list[int | None] = []
    for lst in lists:
        out.extend(lst)
    return out
