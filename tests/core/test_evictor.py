"""Prefix-subset eviction: exact order, aligned timestamps, independent pruning, zero-value pages."""

from __future__ import annotations

from corekit import assert_free_pool, chunked, cross, full, make_tree, mamba, states_at, swa, toks


def _insert(alloc, tree, seq, owner, names=("full", "swa"), key=None):
    pages = {n: alloc.alloc(n, len(seq), owner) for n in names}
    tree.insert(seq, pages, extra_key=key)
    return pages


def test_lru_order_across_paths() -> None:
    alloc, tree = make_tree(full(), swa(2))
    a = _insert(alloc, tree, toks(3, 0), 1)
    b = _insert(alloc, tree, toks(3, 100), 2)
    c = _insert(alloc, tree, toks(3, 200), 3)
    tree.match(toks(3, 0))  # A is now the most recent
    order = [tree.evict(1).pages for _ in range(3)]
    assert order == [{"full": b["full"], "swa": b["swa"]}, {"full": c["full"], "swa": c["swa"]},
                     {"full": a["full"], "swa": a["swa"]}]
    assert tree.evict(1).bytes_freed == 0
    assert_free_pool(alloc)


def test_deeper_first_at_equal_time() -> None:
    alloc, tree = make_tree(full())
    base = _insert(alloc, tree, toks(4), 1, names=("full",))
    ext = alloc.alloc("full", 2, 2)
    tree.insert(toks(6), {"full": [None] * 4 + ext})  # [0,4) and [4,6) share the insert's timestamp
    assert tree.evict(1).pages == {"full": ext}
    assert tree.evict(1).pages == {"full": base["full"]}


def test_aligned_timestamps_do_not_cap_the_hit() -> None:
    alloc, tree = make_tree(full(), swa(2))
    a = _insert(alloc, tree, toks(4, 0), 1)
    _insert(alloc, tree, toks(4, 100), 2)
    tree.match(toks(4, 0))
    tree.evict(1)  # B goes whole (older), A keeps both types: its window is as fresh as its full pages
    assert tree.match(toks(4, 0)).hit_tokens == 4
    # at equal time the leaf goes whole before its window alone: never full pages without a usable window
    assert tree.evict(1).pages == {"full": a["full"], "swa": a["swa"]}


def test_out_of_window_pages_go_before_full_pages() -> None:
    alloc, tree = make_tree(full(), swa(2))
    p1 = _insert(alloc, tree, toks(6), 1)  # node [0,6)
    f2, s2 = alloc.alloc("full", 4, 2), alloc.alloc("swa", 4, 2)
    tree.insert(toks(10), {"full": [None] * 6 + f2, "swa": [None] * 6 + s2})  # node [6,10)
    tree.match(toks(10))  # touches full everywhere, the window [8,10) only in [6,10)
    # oldest unit: the sliding-window pages of [0,6), not needed by the hit at 10
    assert tree.evict(1).pages == {"swa": p1["swa"]}
    assert tree.match(toks(10)).hit_tokens == 10
    assert tree.match(toks(6) + [1]).hit_tokens == 0  # the shorter prefix lost its window
    tree.check_integrity({})


def test_finished_chunks_go_before_full_pages() -> None:
    alloc, tree = make_tree(full(), chunked(4))
    p1 = _insert(alloc, tree, toks(8), 1, names=("full", "chunked"))  # node [0,8): chunks [0,4) and [4,8)
    f2, c2 = alloc.alloc("full", 4, 2), alloc.alloc("chunked", 4, 2)
    tree.insert(toks(12), {"full": [None] * 8 + f2, "chunked": [None] * 8 + c2})
    tree.match(toks(12))  # the hit at 12 needs only the chunk [8,12)
    assert tree.evict(1).pages == {"chunked": p1["chunked"]}
    assert tree.match(toks(12)).hit_tokens == 12
    assert tree.match(toks(8) + [1]).hit_tokens == 8  # a chunk boundary needs no chunked pages
    assert tree.match(toks(6) + [1]).hit_tokens == 4  # 6 needs [4,6): gone, so back to the boundary at 4
    tree.check_integrity({})


def test_mamba_states_off_the_hit_point_go_first() -> None:
    alloc, tree = make_tree(full(), mamba(interval=4))
    f1, st1 = alloc.alloc("full", 6, 1), alloc.alloc("mamba", 2, 1)
    # first request: 6 tokens, checkpoint at 4, end state at 6
    tree.insert(toks(6), {"full": f1, "mamba": states_at(6, {3: st1[0], 5: st1[1]})})
    f2, st2 = alloc.alloc("full", 4, 2), alloc.alloc("mamba", 2, 2)
    tree.insert(toks(10), {"full": [None] * 6 + f2, "mamba": states_at(10, {7: st2[0], 9: st2[1]})})
    tree.match(toks(10))
    # the states at 4 and 6 are only refreshed by hits ending there: they go before anything else
    assert tree.evict(1).pages == {"mamba": st1}
    assert tree.match(toks(10)).hit_tokens == 10
    assert tree.match(toks(7) + [1]).hit_tokens == 0
    # then the leaf [6,10) with its states; [0,6) has no state left, so it is zero-value and goes too
    assert tree.evict(1).pages == {"full": f2 + f1, "mamba": st2}
    assert_free_pool(alloc)


def test_zero_value_tail_is_truncated() -> None:
    alloc, tree = make_tree(full(), mamba(interval=4))
    f, st = alloc.alloc("full", 7, 1), alloc.alloc("mamba", 1, 1)
    res = tree.insert(toks(7), {"full": f, "mamba": states_at(7, {3: st[0]})})  # no end state kept
    assert tree.prune().pages == {"full": f[4:]}  # tokens 4..6 can never be hit
    assert (res.node.start, res.node.end) == (0, 4)
    assert tree.match(toks(7)).hit_tokens == 4
    tree.check_integrity({})


def test_zero_value_leaf_without_any_hit_point_is_removed() -> None:
    alloc, tree = make_tree(full(), swa(4))
    f, s = alloc.alloc("full", 3, 1), alloc.alloc("swa", 3, 1)
    alloc.free("swa", s)
    res = tree.insert(toks(3), {"full": f, "swa": [None] * 3})
    assert tree.match(toks(3)).hit_tokens == 0
    handle = tree.lock(res.node)  # e.g. a running request that inserted its prompt
    assert tree.prune().pages == {}  # locked: kept
    tree.unlock(handle)
    assert tree.prune().pages == {"full": f}
    assert_free_pool(alloc)


def test_prefers_units_that_free_whole_large_pages() -> None:
    # full 2 B, swa 2 B, a 2-layer draft 4 B -> large 4 B: 2 full or 2 swa pages per large page.
    alloc, tree = make_tree(full(), swa(4), full(layers=2, name="draft_full"))
    names = ("full", "swa", "draft_full")
    assert alloc.layout.large_page_bytes == 4
    p1 = _insert(alloc, tree, toks(12), 1, names=names)  # node [0,12): 6 whole large pages of swa
    held = {n: alloc.alloc(n, 3, 2) for n in names}  # full/swa: x0 x1 | y0 -- x0 stays with the request
    tree.insert(toks(14), {n: [None] * 12 + held[n][1:] for n in names})
    tree.match(toks(14))  # one timestamp for: leaf [12,14), its swa, the swa of [0,12) (window 10..13)
    # removing the leaf frees 1 + 1 + 2 whole large pages (x1 shares with x0); [0,12)'s swa frees 6
    assert tree.evict(1).pages == {"swa": p1["swa"]}
    tree.check_integrity({n: held[n][:1] for n in names})


def test_cross_attention_pages_go_with_their_key_root() -> None:
    alloc, tree = make_tree(full(), cross(encoder_tokens=2))
    enc = alloc.alloc("cross", 2, 1)
    f = alloc.alloc("full", 3, 1)
    tree.insert(toks(3), {"full": f, "cross": enc}, extra_key="img")
    assert tree.evict(1).pages == {"full": f}  # the path first; the key root keeps the image's pages
    assert tree.match([5], extra_key="img").pages["cross"].pages == tuple(enc)
    assert tree.evict(1).pages == {"cross": enc}
    assert_free_pool(alloc)


def test_locked_pages_survive_evict_everything() -> None:
    alloc, tree = make_tree(full(), swa(2))
    a = _insert(alloc, tree, toks(4, 0), 1)
    b = _insert(alloc, tree, toks(4, 100), 2)
    handle = tree.lock(tree.match(toks(4, 0)).node)  # protects a's full pages and its last 2 (window)
    freed = tree.evict(10**9)
    assert freed.pages["full"] == b["full"]
    assert sorted(freed.pages["swa"]) == sorted(b["swa"] + a["swa"][:2])  # a's out-of-window pages go too
    assert freed.bytes_freed == 10 * 2
    tree.unlock(handle)
    rest = tree.evict(10**9).pages  # the split leaf goes first, then its upper half
    assert sorted(rest["full"]) == a["full"] and rest["swa"] == a["swa"][2:]
    assert_free_pool(alloc)


def test_evict_until_stops_when_the_predicate_holds() -> None:
    """`evict_until` sees pages freed per type and stops as soon as its predicate holds."""
    alloc, tree = make_tree(full())
    for base in (0, 100, 200):
        tree.insert(toks(4, base), {"full": alloc.alloc("full", 4, owner=base)})
    seen: list[list[int]] = []

    def done(freed: list[int]) -> bool:
        seen.append(list(freed))
        return freed[0] >= 5

    result = tree.evict_until(done)
    assert len(result.pages["full"]) == 8  # whole leaves go: 4 + 4 >= 5
    assert seen[0] == [0] and seen[-1] == [8]
    assert tree.evict_until(lambda freed: True).bytes_freed == 0
    alloc.check_integrity()


def _branch_at_6(alloc, tree):
    """Request A cached toks(6) + [100, 101]; request B hit its first 6 tokens and cached toks(6) + [200, 201],
    so the node ending at 6 has two children: a branch point (the end of a shared document, say)."""
    a = _insert(alloc, tree, toks(6) + [100, 101], 1)
    assert tree.match(toks(6) + [200, 201]).hit_tokens == 6
    b = {n: alloc.alloc(n, 2, 2) for n in ("full", "swa")}
    tree.insert(toks(6) + [200, 201], {n: [None] * 6 + b[n] for n in b})
    return a, b


def test_passing_a_branch_point_refreshes_its_window() -> None:
    alloc, tree = make_tree(full(), swa(2))
    a, b = _branch_at_6(alloc, tree)
    tree.match(toks(6) + [100, 101])  # A again: needs the window [6, 8), passes the branch point at 6
    # The window a hit at 6 needs ([4, 6)) was refreshed with A's pages; the pages below it cannot serve a hit
    # at 6 and go first (the node was split at 4). Without the refresh [0, 6) would go whole and the next
    # question at 6 would miss.
    assert tree.evict(1).pages == {"swa": a["swa"][:4]}
    assert tree.evict(1).pages == {"full": b["full"], "swa": b["swa"]}  # then B's leaf, the oldest
    assert tree.match(toks(6) + [300]).hit_tokens == 6
    tree.check_integrity({})


def test_branch_point_that_cannot_be_hit_keeps_no_window() -> None:
    alloc, tree = make_tree(full(), swa(2), mamba(interval=4))
    f, s, st = alloc.alloc("full", 8, 1), alloc.alloc("swa", 8, 1), alloc.alloc("mamba", 2, 1)
    tree.insert(toks(6) + [100, 101], {"full": f, "swa": s, "mamba": states_at(8, {3: st[0], 7: st[1]})})
    assert tree.match(toks(6) + [200, 201]).hit_tokens == 4  # the last state before 8 is at 4
    fb, sb, stb = alloc.alloc("full", 2, 2), alloc.alloc("swa", 2, 2), alloc.alloc("mamba", 1, 2)
    tree.insert(toks(6) + [200, 201], {"full": [None] * 6 + fb, "swa": [None] * 6 + sb,
                                       "mamba": states_at(8, {7: stb[0]})})
    tree.match(toks(6) + [100, 101])
    # a branch at 6 with no state at 6 cannot serve a hit: its window [4, 6) is not refreshed and goes first
    assert tree.evict(1).pages == {"swa": s[4:6]}
    assert tree.evict(1).pages == {"swa": s[:4]}
    tree.check_integrity({})


def test_branch_window_is_pinned_while_requests_run_below() -> None:
    alloc, tree = make_tree(full(), swa(2))
    a = {n: alloc.alloc(n, 8, 1) for n in ("full", "swa")}
    handle_a = tree.lock(tree.insert(toks(6) + [100, 101], a).node)  # A is still decoding; it locks [6, 8)
    handle_b = tree.lock(tree.match(toks(6) + [200, 201]).node)
    b = {n: alloc.alloc(n, 2, 2) for n in ("full", "swa")}
    tree.insert(toks(6) + [200, 201], {n: [None] * 6 + b[n] for n in b})  # the branch point at 6 appears
    tree.unlock(handle_b)
    # A's own lock starts at 6, yet the window [4, 6) a question branching at 6 needs stays locked while A runs
    assert tree.stats().locked_pages == {"full": 8, "swa": 4}
    freed = tree.evict(10**9).pages
    assert sorted(freed["swa"]) == sorted(a["swa"][:4] + b["swa"]) and freed["full"] == b["full"]
    assert tree.match(toks(6) + [300]).hit_tokens == 6
    tree.unlock(handle_a)  # no request below the branch any more: the pin goes with the last ref
    assert tree.stats().locked_pages == {"full": 0, "swa": 0}
    tree.evict(10**9)
    assert_free_pool(alloc)
