"""Typed radix tree: prefix cache whose nodes own per-type small pages.

Keys are token ids plus an extra key (image hash, LoRA id): each extra key has its own *key root*, so requests
with different extra keys never share nodes. The tree works in whole pages of P tokens: inserted lengths are
multiples of P and nodes split only at page boundaries.

Per node and type (see nodes.Node): TOKENS types hold one page per page of the span (None = dropped), STATE
types hold states at page ends (None where no checkpoint was kept), REQUEST types (cross-attention encoder
pages) are held once per extra key, on the key root: every request under that key shares the same encoder
input.

  match(tokens, key)     longest prefix every type can serve (policies.max_hit); split so a node ends there;
                         touch the pages the hit needs (aligned timestamps), and those a hit at each
                         branch point passed on the way needs; return them and the node.
  insert(tokens, pages)  add the span; caller pages the tree already has are duplicates and are FREED here
                         (reported in the result); caller pages filling a tombstone are adopted.
  lock(node) / unlock    per-type lock refs on exactly the pages a hit at node needs (full: the whole path,
                         sliding window: the last window, Mamba: the state at node) + a structural ref on the
                         path; release_type() drops one type early (e.g. sliding window once out of window).
                         Branch points above locked nodes are pinned (their hit's window locked) until no
                         request runs below them.
  evict(num_bytes)       see evictor.py.

Costs: match and insert O(key length + depth * types); lock/unlock O(depth * types); no call scans the tree.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import cast

from ._pages import clear_flags, flag_pages
from .allocator import TwoLevelAllocator
from .evictor import Evictor
from .nodes import (
    EvictResult,
    InsertResult,
    LockHandle,
    MatchResult,
    Node,
    TreeStats,
    TypeHit,
)
from .policies import Policy, make_policy
from .specs import PageKind


class TypedRadixTree:
    """Prefix cache over a `TwoLevelAllocator`. Owns the pages it holds: it frees duplicates and evicted
    pages."""

    def __init__(self, allocator: TwoLevelAllocator) -> None:
        layout = allocator.layout
        self.allocator = allocator
        self.P = layout.tokens_per_page
        self.names = layout.type_names
        self.policies: tuple[Policy, ...] = tuple(make_policy(g.spec, self.P) for g in layout.model.groups)
        self.aligned = tuple(i for i, p in enumerate(self.policies) if p.kind is not PageKind.REQUEST)
        self.request = tuple(i for i, p in enumerate(self.policies) if p.kind is PageKind.REQUEST)
        self.gated = tuple(t for t in self.aligned if not self.policies[t].leaf_only)  # types that leave holes
        self.page_bytes = tuple(t.page_bytes for t in layout.types)
        self.cached_pages = [0] * len(self.names)
        self.locked_pages = [0] * len(self.names)
        self.num_nodes = 0
        self._index = {n: i for i, n in enumerate(self.names)}
        self._roots: dict[Hashable, Node] = {}
        # per type, one byte per small page: 1 while the tree holds it (no page cached twice)
        self._cached = [bytearray(a.num_pages) for a in allocator.types]
        self._clock = 0
        self._next_nid = 0
        self._pins: dict[Node, list[object | None]] = {}  # branch -> per type the top of its locked window
        self.evictor = Evictor(self)

    # ----------------------------------------------------------------------------------------------- match
    def match(self, tokens: Sequence[int], extra_key: Hashable = None) -> MatchResult:
        """Longest cached prefix of `tokens` (whole pages) that every type can serve under `extra_key`.

        Mutates: may split the node containing the hit (so `node` ends at the hit) and nodes where a passed
        branch point's window starts; refreshes the timestamps of the pages the hit needs, and of those a hit
        at each servable branch point on the path needs. Does not lock: call `lock(result.node)` before the
        pages can be evicted.
        """
        root = self._roots.get(extra_key)
        if root is None:
            return MatchResult(0, None, {})
        toks = _token_array(tokens)
        path, matched = self._walk(root, toks, len(toks) // self.P)
        hit = self._best_hit(path, matched)
        node = self._node_ending_at(root, path, hit)
        self._touch(node, hit, self._tick())
        return MatchResult(hit * self.P, node, self._hit_pages(node, hit))

    def _walk(self, root: Node, toks: array[int], npages: int) -> tuple[list[Node], int]:
        """Nodes along the longest page-aligned match of `toks` (the last one maybe partly) and its pages."""
        P, node, pos, path = self.P, root, 0, []
        while pos < npages:
            child = node.children.get(self._key(toks, pos * P))
            if child is None:
                break
            n = self._common_pages(child.tokens, toks, pos * P)
            path.append(child)
            pos += n
            if n * P < len(child.tokens):
                break
            node = child
        return path, min(pos, npages)

    def _common_pages(self, span: array[int], toks: array[int], at: int) -> int:
        seg = toks[at:at + len(span)]  # int64 arrays: slices and comparisons are memory copies and compares
        if seg == span:
            return len(span) // self.P
        n, lo, step = min(len(seg), len(span)), 0, 16
        while lo + step <= n and seg[lo:lo + step] == span[lo:lo + step]:  # gallop: an early mismatch costs one
            lo, step = lo + step, step * 2                                  # short comparison, a late one log n
        hi = min(lo + step, n)  # seg[:lo] == span[:lo]; they differ before hi, if at all
        while hi - lo > 16:  # bisect with C-level slice comparisons
            mid = (lo + hi) // 2
            if seg[lo:mid] == span[lo:mid]:
                lo = mid
            else:
                hi = mid
        while lo < hi and seg[lo] == span[lo]:
            lo += 1
        return lo // self.P

    def _key(self, toks: array[int], at: int) -> Hashable:
        return toks[at] if self.P == 1 else tuple(toks[at:at + self.P])

    def _entries(self, path: list[Node], npages: int, types: Sequence[int] | None = None) -> list[list[int | None]]:
        """Per type, the aligned page entries of the first `npages` pages along `path` (only for `types` if
        given, empty lists for the others)."""
        out: list[list[int | None]] = []
        for t in range(len(self.names)):
            lst: list[int | None] = []
            if t in (self.aligned if types is None else types):
                for node in path:
                    lst.extend(node.pages[t])
                del lst[npages:]
            out.append(lst)
        return out

    def _best_hit(self, path: list[Node], limit: int) -> int:
        """Largest h <= limit every policy can serve (fixpoint of the per-type max_hit). A type whose pages a
        hit of h needs are all present serves h; that is checked on the nodes' held counts, so the
        aligned entries are built (and scanned by max_hit) only when some needed page is missing."""
        h, entries = limit, list[list[int | None]]()
        while True:
            start = h
            for t in self.gated:
                if not self._serves(path, t, h):
                    entries = entries or self._entries(path, limit, self.gated)
                    h = self.policies[t].max_hit(entries[t], h)
            if h == start:
                return h

    def _serves(self, path: list[Node], t: int, h: int) -> bool:
        """Whether every page of type t that a hit of h pages needs is present along `path`. O(nodes it
        spans), plus a scan of the needed part of nodes with tombstones."""
        need, P = self.policies[t].needed_pages(h), self.P
        for node in reversed(path):
            s = node.start // P
            if s >= need.stop:
                continue
            if node.end // P <= need.start:
                break
            pages = node.pages[t]
            if node.held[t] != len(pages) and None in pages[max(need.start - s, 0):need.stop - s]:
                return False
        return True

    def _node_ending_at(self, root: Node, path: list[Node], hit: int) -> Node:
        if hit == 0:
            return root
        for node in path:
            end = node.end // self.P
            if end == hit:
                return node
            if end > hit:
                return self._split(node, hit)
        raise AssertionError("hit beyond the matched path")

    def _hit_pages(self, node: Node, hit: int) -> dict[str, TypeHit]:
        """Per type, the pages a hit of `hit` pages ending at `node` needs, read off the nodes that hold them."""
        out: dict[str, TypeHit] = {}
        for t in self.aligned:
            need = self.policies[t].needed_pages(hit)
            out[self.names[t]] = TypeHit(need.start, self._pages_from(node, t, need.start) if need else ())
        req = node.root.req_pages
        assert req is not None
        for t in self.request:
            out[self.names[t]] = TypeHit(0, tuple(req[t]))
        return out

    def _pages_from(self, node: Node, t: int, first: int) -> tuple[int, ...]:
        """Type t's entries of pages [first, end of `node`) along the path (all present: a servable hit)."""
        P, cur = self.P, node
        if cur.start // P <= first:  # one node (a sliding window, a Mamba state)
            return cast(tuple[int, ...], tuple(cur.pages[t][first - cur.start // P:]))
        chunks = list[list[int | None]]()
        while cur.start // P > first:
            chunks.append(cur.pages[t])
            cur = cast(Node, cur.parent)
        out = cur.pages[t][first - cur.start // P:]
        for chunk in reversed(chunks):
            out += chunk
        return cast(tuple[int, ...], tuple(out))

    # ---------------------------------------------------------------------------------------------- insert
    def insert(self, tokens: Sequence[int], pages: Mapping[str, Sequence[int | None]],
               extra_key: Hashable = None, *, below: Node | None = None) -> InsertResult:
        """Cache `tokens` (a multiple of P) with the caller's pages; the tree takes ownership of them.

        `pages[name]` for TOKENS/STATE types: one entry per page of `tokens` (None where the caller holds
        none, e.g. sliding-window pages already released, or positions without a Mamba checkpoint);
        full-attention types must cover every page the tree does not already have. REQUEST types (optional):
        the encoder pages. Caller pages the tree already holds at that position are freed (duplicates). Raises
        ValueError, changing nothing, on a malformed call or a page that is unallocated or owned by the tree
        elsewhere.

        `below`: a node the caller holds locked whose path is the start of its sequence; `tokens` and `pages`
        are then the sequence's continuation after it (`extra_key` is the node's). A request that checkpoints
        again below its matched prefix passes it, so the prefix's pages are not handed in and compared again.
        """
        toks = _token_array(tokens)
        if len(toks) % self.P:
            raise ValueError(f"insert length {len(toks)} is not a multiple of tokens_per_page {self.P}")
        npages = len(toks) // self.P
        args = self._insert_args(pages, npages)
        root: Node | None = self._roots.get(extra_key)
        base, start = 0, root  # the sequence's first page, the node its tokens continue
        if below is not None:
            if not (below.alive and below.ref) or below.root is not self._roots.get(below.extra_key):
                raise ValueError("insert below a node that is not locked in this tree")
            if any(args[t] for t in self.request):
                raise ValueError("encoder pages cannot be inserted below a node")
            base, root, start = below.end // self.P, below.root, below
        path, matched = self._walk(start, toks, npages) if start is not None else ([], 0)
        held = self._validate_insert(args, path, matched, root)
        if root is None:
            root = start = self._new_root(extra_key)
        if path and path[-1].end // self.P > base + matched:
            path[-1] = self._split(path[-1], base + matched)
        now = self._tick()
        dups: list[list[int]] = [[] for _ in self.names]
        self._reconcile(path, args, dups, now)
        self._reconcile_request(root, args, dups, now)
        last = path[-1] if path else cast(Node, start)
        if matched < npages:
            parent, last = last, self._add_leaf(last, toks, matched, args, held, now, base)
            if parent.ref and len(parent.children) > 1 and parent.parent is not None and self._servable(parent):
                self._pin(parent)  # a new branch point above running requests
        for t, d in enumerate(dups):
            if d:
                self.allocator.types[t].free(d)
        self._touch(last, base + npages, now)
        if not self._end_servable(last):
            self.evictor.mark_dirty(last)  # its tail may be zero-value: checked at the next evict/prune
        freed = {self.names[t]: d for t, d in enumerate(dups) if d}
        return InsertResult(last, (npages - matched) * self.P, freed)

    def _insert_args(self, pages: Mapping[str, Sequence[int | None]], npages: int) -> list[list[int | None]]:
        unknown = set(pages) - set(self.names)
        if unknown:
            raise ValueError(f"unknown layer types {sorted(unknown)}")
        args: list[list[int | None]] = []
        for t, name in enumerate(self.names):
            given = list(pages.get(name, ()))
            if t in self.aligned and len(given) != npages:
                raise ValueError(f"{name}: {len(given)} page entries for {npages} pages")
            if t in self.request and None in given:
                raise ValueError(f"{name}: encoder pages cannot be None")
            args.append(given)
        return args

    def _validate_insert(self, args: list[list[int | None]], path: list[Node], matched: int,
                         root: Node | None) -> list[int]:
        """Check the caller's pages and claim (flag as cached) the ones the tree will adopt; on ValueError
        every claim is rolled back. Duplicates (to be freed) are checked, not claimed. Returns per type the
        pages of the new part (entries from page `matched` on that are not None). O(pages)."""
        entries, claimed = self._entries(path, matched), list[tuple[int, list[int | None]]]()
        held = [0] * len(self.names)
        try:
            for t in self.aligned:
                mine, theirs, tail = args[t][:matched], entries[t], args[t][matched:]
                adopt, dups = tail, list[int | None]()
                if mine != theirs and mine.count(None) != matched:  # pages for the matched part
                    adopt = adopt[:]
                    for p, q in zip(mine, theirs, strict=True):
                        if p is not None and p != q:
                            (adopt if q is None else dups).append(p)
                held[t] = self._check_pages(t, adopt, claim=True) - (len(adopt) - len(tail))
                claimed.append((t, adopt))
                if held[t] != len(tail) and self.policies[t].leaf_only:
                    raise ValueError(f"{self.names[t]}: every new page must be given")
                self._check_pages(t, dups, claim=False)
            for t in self.request:
                have = root.req_pages[t] if root is not None and root.req_pages is not None else []
                have_set = set(have)
                new = [p for p in args[t] if p is not None and p not in have_set]
                self._check_pages(t, cast(list[int | None], new), claim=not have)
                claimed.append((t, cast(list[int | None], new) if not have else []))
        except ValueError:
            for t, pages in claimed:
                clear_flags(self._cached[t], pages)
            raise
        return held

    def _check_pages(self, t: int, pages: list[int | None], claim: bool) -> int:
        """Pages (None entries skipped) must be in range, allocated, listed once and not cached yet (checked
        in one C pass, before anything changes); with `claim` they are then flagged as cached. Returns how
        many there are. Raises ValueError. O(len)."""
        try:
            return flag_pages(self._cached[t], pages, self.allocator.types[t].used_flags, claim)
        except ValueError as e:
            raise ValueError(f"{self.names[t]}: {e}") from None

    def _reconcile(self, path: list[Node], args: list[list[int | None]], dups: list[list[int]],
                   now: int) -> None:
        """Matched part: adopt caller pages into tombstones, collect the ones the tree already has."""
        pos = 0
        for node in path:
            k = len(node.tokens) // self.P
            for t in self.aligned:
                mine, lst = args[t][pos:pos + k], node.pages[t]
                if mine == lst or mine.count(None) == k:
                    continue
                for j, m in enumerate(mine):
                    if m is None or m == lst[j]:
                        continue
                    if lst[j] is None:
                        self._adopt(node, t, j, m, now)
                    else:
                        dups[t].append(m)
            pos += k

    def _adopt(self, node: Node, t: int, j: int, page: int, now: int) -> None:
        node.pages[t][j] = page  # flagged as cached by _validate_insert
        node.held[t] += 1
        self.cached_pages[t] += 1
        if node.lock[t]:
            self.locked_pages[t] += 1
        node.time[t] = now
        self.evictor.push_partial(node, t)

    def _reconcile_request(self, root: Node, args: list[list[int | None]], dups: list[list[int]],
                           now: int) -> None:
        assert root.req_pages is not None
        for t in self.request:
            mine = cast(list[int], args[t])
            have = root.req_pages[t]
            if not mine or mine == have:
                continue
            if have:
                have_set = set(have)
                dups[t].extend(p for p in mine if p not in have_set)
                continue
            root.req_pages[t] = list(mine)  # flagged as cached by _validate_insert
            root.held[t] = len(mine)
            self.cached_pages[t] += len(mine)
            self.locked_pages[t] += len(mine) if root.lock[t] else 0
            root.time[t] = now

    def _add_leaf(self, parent: Node, toks: array[int], matched: int, args: list[list[int | None]],
                  held: list[int], now: int, base: int = 0) -> Node:
        """A leaf under `parent` for `toks` from page `matched` on (`toks` start at page `base`); `held[t]`:
        the pages of type t among its entries."""
        node = self._new_node(parent, parent.extra_key, toks[matched * self.P:], (base + matched) * self.P)
        parent.children[self._key(node.tokens, 0)] = node
        for t in self.aligned:
            node.pages[t] = args[t][matched:]  # flagged as cached by _validate_insert
            node.held[t] = held[t]
            self.cached_pages[t] += node.held[t]
            node.time[t] = now
            self.evictor.push_partial(node, t)
        return node

    def _end_servable(self, node: Node) -> bool:
        """Cheap sufficient check that a hit at `node`'s end is servable from `node`'s own pages."""
        s, e = node.start // self.P, node.end // self.P
        for t in self.aligned:
            need = self.policies[t].needed_pages(e)
            if self.policies[t].leaf_only or not need:
                continue
            pages = node.pages[t]
            if need.start < s or (node.held[t] != len(pages) and None in pages[need.start - s:]):
                return False
        return True

    # -------------------------------------------------------------------------------------- node structure
    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _new_node(self, parent: Node | None, extra_key: Hashable, tokens: array[int], start: int) -> Node:
        self._next_nid += 1
        self.num_nodes += 1
        return Node(self._next_nid, parent, extra_key, tokens, start, len(self.names))

    def key_root(self, extra_key: Hashable = None) -> Node:
        """The key root of `extra_key`, created (empty) if nothing is cached under it yet. A childless key
        root nobody locks is removed by the next eviction."""
        root = self._roots.get(extra_key)
        return root if root is not None else self._new_root(extra_key)

    def _new_root(self, extra_key: Hashable) -> Node:
        root = self._new_node(None, extra_key, array("q"), 0)
        self._roots[extra_key] = root
        return root

    def _split(self, node: Node, at_pages: int) -> Node:
        """Split `node` at page `at_pages`; the new upper node is returned, `node` keeps the lower part (and
        its identity, so handles and heap entries that name it stay valid). Page ownership moves exactly."""
        parent = node.parent
        assert parent is not None and node.start // self.P < at_pages < node.end // self.P
        cut = at_pages * self.P - node.start
        upper = self._new_node(parent, node.extra_key, node.tokens[:cut], node.start)
        parent.children[self._key(node.tokens, 0)] = upper
        node.tokens, node.start = node.tokens[cut:], node.start + cut
        for t in self.aligned:
            k = cut // self.P
            upper.pages[t], node.pages[t] = node.pages[t][:k], node.pages[t][k:]
            upper.held[t] = k - upper.pages[t].count(None)
            node.held[t] -= upper.held[t]
        upper.time, upper.lock = node.time[:], node.lock[:]
        upper.last_access, upper.ref = node.last_access, node.ref
        upper.tag, node.tag = node.tag, object()
        upper.children = {self._key(node.tokens, 0): node}
        node.parent = upper
        self.evictor.push_node(upper)
        return upper

    def _touch(self, node: Node, hit: int, now: int) -> None:
        """Aligned timestamps: every type's pages that a hit of `hit` pages at `node` needs get time `now`;
        the whole path's `last_access` too; and so do the pages a hit at each branch point above `node` needs
        (`_touch_branches`). Pushes the refreshed units to the evictor."""
        cur: Node | None = node
        while cur is not None:
            cur.last_access = now
            cur = cur.parent
        root = node.root
        for t in self.aligned:
            need = self.policies[t].needed_pages(hit)
            cur = node
            while need and cur is not root and cur is not None and cur.end // self.P > need.start:
                cur.time[t] = now
                self.evictor.push_partial(cur, t)
                cur = cur.parent
        for t in self.request:
            root.time[t] = now
        self._touch_branches(node, now)
        if not node.children:
            self.evictor.push_removal(node)

    def _touch_branches(self, node: Node, now: int) -> None:
        """Refresh what a hit at each branch point above `node` needs from the types that leave holes
        (`_branches_above`): a request passing through keeps the branch's window (or state) as fresh as the
        path it shares, instead of letting the LRU drop it first. The node is split where the needed range
        starts, so the part of it below keeps its age."""
        for branch in self._branches_above(node):
            for t in self.gated:
                need = self.policies[t].needed_pages(branch.end // self.P)
                if need:
                    self._refresh(branch, t, need.start, now)

    def _branches_above(self, node: Node, pinned: bool = True) -> list[Node]:
        """Branch points strictly above `node` (nodes with several children: prompts diverged there, so
        later ones are likely to) at which a hit is servable now, deepest first; pinned ones (always
        servable) only if `pinned`. A branch whose hit cannot be served (a tombstone in its window, no state
        at its end) is left out: its pages cannot serve it. O(depth + nodes of those windows)."""
        out, cur = [], node.parent
        while cur is not None and cur.parent is not None:
            if len(cur.children) > 1 and (pinned if cur in self._pins else self._servable(cur)):
                out.append(cur)
            cur = cur.parent
        return out

    def _servable(self, node: Node) -> bool:
        """Whether a hit ending at `node` can be served: every type that leaves holes holds what it needs."""
        h = node.end // self.P
        return all(self._present_below(node, t, self.policies[t].needed_pages(h).start) for t in self.gated)

    def _present_below(self, node: Node, t: int, first: int) -> bool:
        """Whether type t holds every page from page `first` to the end of `node` along its path."""
        P, cur = self.P, node
        while cur.end // P > first and cur.parent is not None:
            pages = cur.pages[t]
            if cur.held[t] != len(pages) and None in pages[max(first - cur.start // P, 0):]:
                return False
            cur = cur.parent
        return True

    def _refresh(self, node: Node, t: int, first: int, now: int) -> None:
        """Give type t's pages from page `first` to the end of `node` time `now` (splitting where they
        start)."""
        P, cur = self.P, node
        while cur.end // P > first and cur.parent is not None:
            if cur.start // P < first:
                self._split(cur, first)
            cur.time[t] = now
            self.evictor.push_partial(cur, t)
            cur = cur.parent

    # ------------------------------------------------------------------------------------- locks
    def lock(self, node: Node) -> LockHandle:
        """Protect what a hit ending at `node` needs, per type, plus a structural ref on the path; and pin
        the branch points above it (`_pin`). O(depth + nodes of the locked windows)."""
        root = node.root
        tags: list[object | None] = [None] * len(self.names)
        for t in self.request:
            self._inc_lock(root, t)
            tags[t] = root.tag
        for t in self.aligned:
            tags[t] = self._lock_type(node, t)
        for branch in self._branches_above(node, pinned=False):
            self._pin(branch)
        walk: Node | None = node
        while walk is not None:
            walk.ref += 1
            walk = walk.parent
        return LockHandle(node, tags)

    def _lock_type(self, node: Node, t: int) -> object | None:
        """Lock type t's pages a hit at `node` needs; returns the tag of the topmost locked node."""
        need, cur, top, root = self.policies[t].needed_pages(node.end // self.P), node, None, node.root
        while need and cur is not root and cur.end // self.P > need.start:
            if cur.start // self.P < need.start:
                # The needed range starts inside `cur`: split there, so only the needed part is
                # locked and the rest (e.g. tokens out of a sliding window) stays evictable.
                self._split(cur, need.start)
            self._inc_lock(cur, t)
            top, cur = cur, cast(Node, cur.parent)
        return top.tag if top is not None else None

    def _unlock_type(self, node: Node, t: int, tag: object) -> None:
        """Undo `_lock_type(node, t)`: walk up from `node` to the node carrying `tag`."""
        cur: Node | None = node
        while cur is not None:
            self._dec_lock(cur, t)
            if cur.tag is tag:
                break
            cur = cur.parent
        assert cur is not None, "lock walk ran past the root"

    def _pin(self, branch: Node) -> None:
        """Lock what a hit at `branch` needs from the types that leave holes, for as long as requests run
        below it (released when its ref drops to 0, in `unlock`): the next prompt that diverges there
        finds its window even if the requests' own locks start above it (a question's window starts
        |question| tokens after the document's). Call only for a servable branch with ref > 0 or about to
        get one."""
        if branch not in self._pins:
            self._pins[branch] = [self._lock_type(branch, t) if t in self.gated else None
                                  for t in range(len(self.names))]

    def _unpin(self, branch: Node) -> None:
        for t, tag in enumerate(self._pins.pop(branch)):
            if tag is not None:
                self._unlock_type(branch, t, tag)

    def release_type(self, handle: LockHandle, name: str) -> None:
        """Drop `handle`'s lock on one type early (its pages become evictable). No-op if already released."""
        t = self._index[name]
        tag = handle.tags[t]
        if handle.node is None or tag is None:
            return
        handle.tags[t] = None
        if t in self.request:
            self._dec_lock(handle.node.root, t)
        else:
            self._unlock_type(handle.node, t, tag)

    def unlock(self, handle: LockHandle) -> None:
        """Release everything `handle` still locks, and the pins of branch points no request runs below any
        more. Raises ValueError if it was already unlocked."""
        node = handle.node
        if node is None:
            raise ValueError("handle already unlocked")
        for name in self.names:
            self.release_type(handle, name)
        cur: Node | None = node
        while cur is not None:
            cur.ref -= 1
            if cur.ref == 0:
                if cur in self._pins:
                    self._unpin(cur)
                self.evictor.on_unref(cur)
            cur = cur.parent
        handle.node = None

    def _inc_lock(self, node: Node, t: int) -> None:
        if node.lock[t] == 0:
            self.locked_pages[t] += node.count(t)
        node.lock[t] += 1

    def _dec_lock(self, node: Node, t: int) -> None:
        node.lock[t] -= 1
        if node.lock[t] == 0:
            self.locked_pages[t] -= node.count(t)
            self.evictor.push_partial(node, t)

    # ----------------------------------------------------------------------------------- eviction & stats
    def evict(self, num_bytes: int) -> EvictResult:
        """Free at least `num_bytes` of cached pages if possible (see evictor.Evictor.evict)."""
        return self.evictor.evict(num_bytes)

    def evict_for(self, name: str, num_pages: int) -> EvictResult:
        """Evict until `num_pages` pages of type `name` can be allocated (see evictor.Evictor.evict_for)."""
        return self.evictor.evict_for(name, num_pages)

    def evict_until(self, done: Callable[[Sequence[int]], bool]) -> EvictResult:
        """Evict until `done(pages freed per type)` holds (see evictor.Evictor.evict_until)."""
        return self.evictor.evict_until(done)

    def prune(self) -> EvictResult:
        """Free only pages that can no longer contribute to any hit (see evictor.Evictor.prune)."""
        return self.evictor.prune()

    def iter_nodes(self) -> Iterator[Node]:
        """Every live node, key roots first, depth-first. O(nodes)."""
        stack = list(self._roots.values())
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    def stats(self) -> TreeStats:
        pb = self.page_bytes
        cached = sum(c * b for c, b in zip(self.cached_pages, pb, strict=True))
        locked = sum(c * b for c, b in zip(self.locked_pages, pb, strict=True))
        return TreeStats(self.num_nodes, dict(zip(self.names, self.cached_pages, strict=True)),
                         dict(zip(self.names, self.locked_pages, strict=True)), cached, cached - locked,
                         locked)

    def check_integrity(self, held: Mapping[str, Sequence[int]] | None = None) -> None:
        """Assert structure, ownership, counters and locks (see integrity.check_tree); with `held` (pages
        running requests own outside the tree, per type) also allocator used == tree + held, disjoint."""
        from .integrity import check_tree

        check_tree(self, held)


def _token_array(tokens: Sequence[int]) -> array[int]:
    """`tokens` as an int64 array (sglang's RadixKey already holds one: used as it is, never stored; node spans
    are slices of it, copies)."""
    return tokens if type(tokens) is array and tokens.typecode == "q" else array("q", tokens)
