"""Typed radix tree: match/insert with exact page ids, splits, duplicates, tombstones, extra keys, locks."""

from __future__ import annotations

import pytest
from corekit import chunked, cross, flat, full, make_tree, mamba, states_at, swa, toks


def test_insert_then_match_full_and_window() -> None:
    alloc, tree = make_tree(full(), swa(4))
    f, s = alloc.alloc("full", 10, 1), alloc.alloc("swa", 10, 1)
    res = tree.insert(toks(10), {"full": f, "swa": s})
    assert (res.new_tokens, res.duplicates_freed) == (10, {})
    hit = tree.match(toks(10) + [99])
    assert hit.hit_tokens == 10
    assert hit.pages["full"] == (0, tuple(f))
    assert hit.pages["swa"] == (6, tuple(s[6:]))  # only the last 4 tokens' pages
    assert hit.node is res.node
    tree.check_integrity({})


def test_partial_match_splits_at_the_hit() -> None:
    alloc, tree = make_tree(full(), swa(2))
    f, s = alloc.alloc("full", 8, 1), alloc.alloc("swa", 8, 1)
    tree.insert(toks(8), {"full": f, "swa": s})
    hit = tree.match(toks(5) + [100, 101])
    assert hit.hit_tokens == 5
    assert (hit.node.start, hit.node.end) == (0, 5)
    assert hit.pages["swa"] == (3, (s[3], s[4]))
    assert tree.num_nodes == 3  # key root + [0,5) + [5,8)
    assert [c.end for c in hit.node.children.values()] == [8]
    tree.check_integrity({})


def test_extra_keys_never_share_nodes() -> None:
    alloc, tree = make_tree(full())
    tree.insert(toks(4), {"full": alloc.alloc("full", 4, 1)}, extra_key="img-a")
    assert tree.match(toks(4), extra_key="img-b") == (0, None, {})
    assert tree.match(toks(4)).node is None
    assert tree.match(toks(4), extra_key="img-a").hit_tokens == 4


def test_duplicates_are_freed_and_reported() -> None:
    alloc, tree = make_tree(full(), swa(2))
    f1, s1 = alloc.alloc("full", 6, 1), alloc.alloc("swa", 6, 1)
    tree.insert(toks(6), {"full": f1, "swa": s1})
    # a second request computed the first 4 tokens itself, then 2 new ones
    f2, s2 = alloc.alloc("full", 6, 2), alloc.alloc("swa", 6, 2)
    seq2 = toks(4) + [50, 51]
    res = tree.insert(seq2, {"full": f2, "swa": s2})
    assert res.duplicates_freed == {"full": f2[:4], "swa": s2[:4]}
    assert res.new_tokens == 2
    assert not any(alloc.of("full").is_used(p) for p in f2[:4])
    assert tree.match(seq2).pages["full"].pages == (*f1[:4], *f2[4:])
    tree.check_integrity({})


def test_pages_from_a_match_are_not_duplicates() -> None:
    alloc, tree = make_tree(full())
    f = alloc.alloc("full", 4, 1)
    tree.insert(toks(4), {"full": f})
    hit = tree.match(toks(4))
    more = alloc.alloc("full", 2, 2)
    res = tree.insert(toks(6), {"full": [*hit.pages["full"].pages, *more]})
    assert res.duplicates_freed == {} and res.new_tokens == 2
    tree.check_integrity({})


def test_released_window_pages_limit_hits_to_the_end() -> None:
    alloc, tree = make_tree(full(), swa(2))
    f, s = alloc.alloc("full", 8, 1), alloc.alloc("swa", 8, 1)
    alloc.free("swa", s[:6])  # released early during decode
    tree.insert(toks(8), {"full": f, "swa": [None] * 6 + s[6:]})
    assert tree.match(toks(8)).hit_tokens == 8
    # a shorter prompt cannot use the prefix: no window before token 7
    assert tree.match(toks(7) + [77]).hit_tokens == 0
    tree.check_integrity({})


def test_tombstones_are_refilled_by_a_later_insert() -> None:
    alloc, tree = make_tree(full(), swa(2))
    f, s = alloc.alloc("full", 8, 1), alloc.alloc("swa", 8, 1)
    alloc.free("swa", s[:6])
    tree.insert(toks(8), {"full": f, "swa": [None] * 6 + s[6:]})
    s2 = alloc.alloc("swa", 5, 2)
    res = tree.insert(toks(5), {"full": [None] * 5, "swa": s2})
    assert res.duplicates_freed == {}
    assert tree.match(toks(5) + [77]).pages["swa"] == (3, (s2[3], s2[4]))
    tree.check_integrity({})


def test_mamba_hits_only_where_states_are_kept() -> None:
    alloc, tree = make_tree(full(), mamba(interval=4))
    f, st = alloc.alloc("full", 10, 1), alloc.alloc("mamba", 3, 1)
    # checkpoints at tokens 4 and 8 (pages 3 and 7), end state at 10 (page 9)
    tree.insert(toks(10), {"full": f, "mamba": states_at(10, {3: st[0], 7: st[1], 9: st[2]})})
    assert tree.match(toks(10)).pages["mamba"] == (9, (st[2],))
    hit = tree.match(toks(9) + [70])
    assert (hit.hit_tokens, hit.pages["mamba"]) == (8, (7, (st[1],)))
    assert tree.match(toks(6) + [70]).hit_tokens == 4
    assert tree.match(toks(3) + [70]).hit_tokens == 0
    tree.check_integrity({})


def test_mamba_with_pages_of_four_tokens() -> None:
    alloc, tree = make_tree(full(), mamba(interval=8), tokens_per_page=4)
    f, st = alloc.alloc("full", 5, 1), alloc.alloc("mamba", 2, 1)
    tree.insert(toks(20), {"full": f, "mamba": states_at(5, {1: st[0], 4: st[1]})})
    hit = tree.match(toks(19))  # 4 whole pages can match -> best state at token 8
    assert (hit.hit_tokens, hit.pages["mamba"], hit.pages["full"].pages) == (8, (1, (st[0],)), tuple(f[:2]))
    assert hit.node.end == 8
    with pytest.raises(ValueError):
        tree.insert(toks(6), {"full": [None], "mamba": [None]})
    tree.check_integrity({})


def test_chunked_local_hit_needs_current_chunk_only() -> None:
    alloc, tree = make_tree(full(), chunked(4))
    f, c = alloc.alloc("full", 10, 1), alloc.alloc("chunked", 10, 1)
    alloc.free("chunked", c[:8])  # chunks [0,4) and [4,8) released early
    tree.insert(toks(10), {"full": f, "chunked": [None] * 8 + c[8:]})
    assert tree.match(toks(10)).pages["chunked"] == (8, (c[8], c[9]))
    assert tree.match(toks(8) + [80]).hit_tokens == 8  # chunk boundary: needs no chunked pages
    assert tree.match(toks(7) + [80]).hit_tokens == 4
    tree.check_integrity({})


def test_cross_attention_pages_keyed_by_image() -> None:
    alloc, tree = make_tree(full(), cross(encoder_tokens=3))
    enc, f = alloc.alloc("cross", 3, 1), alloc.alloc("full", 4, 1)
    tree.insert(toks(4), {"full": f, "cross": enc}, extra_key="img-7")
    # another prompt with the same image reuses the encoder pages even without a token hit
    hit = tree.match([90, 91], extra_key="img-7")
    assert (hit.hit_tokens, hit.pages["cross"]) == (0, (0, tuple(enc)))
    assert hit.node is not None and hit.node.is_root
    dup = alloc.alloc("cross", 3, 2)
    res = tree.insert([90, 91], {"full": alloc.alloc("full", 2, 2), "cross": dup}, extra_key="img-7")
    assert res.duplicates_freed == {"cross": dup}
    assert tree.match(toks(4), extra_key="img-8").node is None
    tree.check_integrity({})


def test_insert_validation_changes_nothing() -> None:
    alloc, tree = make_tree(full(), swa(2))
    f = alloc.alloc("full", 4, 1)
    tree.insert(toks(4), {"full": f, "swa": [None] * 4})
    stats = tree.stats()
    with pytest.raises(ValueError):  # full pages missing for new tokens
        tree.insert(toks(6), {"full": [None] * 6, "swa": [None] * 6})
    with pytest.raises(ValueError):  # a page cached elsewhere in the tree
        tree.insert([9, 9], {"full": [f[0], f[1]], "swa": [None, None]})
    with pytest.raises(ValueError):  # never allocated
        tree.insert([9, 9], {"full": [40, 41], "swa": [None, None]})
    with pytest.raises(ValueError):  # wrong length
        tree.insert([9, 9], {"full": [None], "swa": [None, None]})
    with pytest.raises(ValueError):
        tree.insert([9], {"full": [None], "bogus": [None]})
    assert tree.stats() == stats
    tree.check_integrity({})


@pytest.mark.parametrize("bad", [-1, 2**40, 2**70, "7", 1.0, "repeat"])
def test_a_bad_page_after_good_ones_claims_nothing(bad: object) -> None:
    """The one-pass check of an insert's pages (a C loop that flags pages as it goes) rolls back every flag it
    set, in every type, when a later entry is bad; the same pages then insert cleanly."""
    alloc, tree = make_tree(full(), swa(2))
    f, s = alloc.alloc("full", 6, 1), alloc.alloc("swa", 6, 1)
    bad_entry = s[0] if bad == "repeat" else bad
    with pytest.raises((ValueError, TypeError)):  # the full type's pages are claimed before swa's bad entry
        tree.insert(toks(6), {"full": f, "swa": [*s[:5], bad_entry]})
    with pytest.raises((ValueError, TypeError)):
        tree.insert(toks(6), {"full": [*f[:4], bad_entry, f[5]], "swa": s})
    assert tree.stats().cached_pages == {"full": 0, "swa": 0}
    tree.check_integrity({"full": f, "swa": s})
    assert tree.insert(toks(6), {"full": f, "swa": s}).new_tokens == 6
    # a page for the matched part that differs from the tree's (a duplicate) is checked, not claimed
    more = alloc.alloc("full", 2, 2)
    with pytest.raises(ValueError):
        tree.insert(toks(8), {"full": [*f[:5], 99, *more], "swa": [None] * 8})
    tree.check_integrity({"full": more})


def test_locks_protect_exactly_what_the_hit_needs() -> None:
    alloc, tree = make_tree(full(), swa(2), mamba(interval=4))
    f, s, st = alloc.alloc("full", 8, 1), alloc.alloc("swa", 8, 1), alloc.alloc("mamba", 2, 1)
    tree.insert(toks(8), {"full": f, "swa": s, "mamba": states_at(8, {3: st[0], 7: st[1]})})
    hit = tree.match(toks(8))
    handle = tree.lock(hit.node)
    # Exact: the node is split where each type's need starts (window of 2, the state at page 7).
    assert tree.stats().locked_pages == {"full": 8, "swa": 2, "mamba": 1}
    tree.release_type(handle, "swa")
    assert tree.stats().locked_pages == {"full": 8, "swa": 0, "mamba": 1}
    freed = tree.evict(10**9)
    assert sorted(freed.pages["swa"]) == s and freed.pages["mamba"] == [st[0]] and "full" not in freed.pages
    assert tree.match(toks(8)).hit_tokens == 0  # window gone
    tree.unlock(handle)
    with pytest.raises(ValueError):
        tree.unlock(handle)
    tree.check_integrity({})


def test_lock_after_split_unlocks_exactly() -> None:
    alloc, tree = make_tree(full(), swa(2))
    f, s = alloc.alloc("full", 8, 1), alloc.alloc("swa", 8, 1)
    tree.insert(toks(8), {"full": f, "swa": s})
    handle = tree.lock(tree.match(toks(8)).node)
    assert tree.match(toks(7) + [1]).hit_tokens == 7  # splits the locked node at 7
    tree.check_integrity({})
    tree.unlock(handle)
    assert tree.stats().locked_pages == {"full": 0, "swa": 0}
    tree.check_integrity({})
    assert flat(tree.evict(10**9).pages["full"]) and alloc.large_pages_free == alloc.pool.total


def _shape(tree) -> list[tuple[int, int, list[list[int | None]]]]:  # type: ignore[no-untyped-def]
    """Every node's span and pages, depth first in child-key order."""
    out, todo = [], [tree.key_root()]
    while todo:
        node = todo.pop()
        out.append((node.start, node.end, [list(p) for p in node.pages]))
        todo.extend(node.children[k] for k in sorted(node.children, reverse=True))
    return out


@pytest.mark.parametrize("second", [toks(6) + [60, 61, 62, 63], toks(8) + [70, 71], toks(10) + [80]],
                         ids=["below-a-fresh-branch", "splits-below-the-prefix", "duplicates-below-the-prefix"])
def test_insert_below_a_locked_node_is_insert_of_the_whole_sequence(second: list[int]) -> None:
    """A request locked at the end of its matched prefix inserts only what follows it: same tree, same
    duplicates, same new tokens as inserting its whole sequence with the prefix's own pages."""
    results = []
    for below in (False, True):
        alloc, tree = make_tree(full(), swa(2))
        tree.insert(toks(6), {"full": alloc.alloc("full", 6, 1), "swa": alloc.alloc("swa", 6, 1)})
        hit = tree.match(second)
        handle = tree.lock(hit.node)
        # while request 2 runs on its 6-token prefix, request 3 caches 10 tokens
        tree.insert(toks(10), {"full": alloc.alloc("full", 10, 3), "swa": alloc.alloc("swa", 10, 3)})
        n, h = len(second), hit.hit_tokens
        assert h == 6
        f, s = alloc.alloc("full", n - h, 2), alloc.alloc("swa", n - h, 2)
        alloc.free("swa", [s[0]])
        s[0] = None  # a window page the request already released
        if below:
            res = tree.insert(second[h:], {"full": f, "swa": s}, below=hit.node)
        else:
            res = tree.insert(second, {"full": [*hit.pages["full"].pages, *f], "swa": [*[None] * h, *s]})
        tree.unlock(handle)
        assert res.node.end == n
        results.append((_shape(tree), res.new_tokens, res.duplicates_freed, alloc.stats()))
        tree.check_integrity({})
    assert results[0] == results[1]


def test_insert_below_needs_a_locked_node() -> None:
    alloc, tree = make_tree(full())
    tree.insert(toks(4), {"full": alloc.alloc("full", 4, 1)})
    node = tree.match(toks(4)).node
    more = alloc.alloc("full", 2, 2)
    with pytest.raises(ValueError, match="not locked"):
        tree.insert([7, 8], {"full": more}, below=node)
    assert alloc.of("full").is_used(more[0]) and tree.match(toks(4) + [7, 8]).hit_tokens == 4


def test_match_finds_the_first_difference_anywhere_in_a_long_node() -> None:
    """The common prefix of a query and a 3,000-token node, wherever they part (the search gallops, then bisects:
    these positions sit at and beside its boundaries)."""
    for at in (0, 1, 15, 16, 17, 47, 48, 49, 112, 1000, 2031, 2999, None):
        alloc, tree = make_tree(full(), num_large=3000)  # a fresh tree each time: a match splits the node
        tree.insert(toks(3000), {"full": alloc.alloc("full", 3000, 1)})
        if at is None:  # a query that ends inside the node
            assert tree.match(toks(1234)).hit_tokens == 1234
        else:
            assert tree.match(toks(at) + [10**7] + toks(3000)[at + 1:]).hit_tokens == at, at
