"""Per-type hit and release rules, table-driven with exact page indices."""

from __future__ import annotations

import pytest
from corekit import chunked, cross, full, mamba, swa

from sglang_jenga.core import make_policy

# (spec factory, P, hit pages) -> needed page range
NEEDED = [
    (full(), 1, 10, range(0, 10)),
    (full(), 4, 0, range(0, 0)),
    # W=4, P=1: tokens [6, 10)
    (swa(4), 1, 10, range(6, 10)),
    (swa(4), 1, 3, range(0, 3)),
    # W=6, P=4: 5 pages = 20 tokens -> tokens [14, 20) -> pages 3, 4
    (swa(6), 4, 5, range(3, 5)),
    # W=8, P=4: tokens [12, 20) -> pages 3, 4 exactly
    (swa(8), 4, 5, range(3, 5)),
    (swa(6), 4, 0, range(0, 0)),
    # C=8, P=1: hit 13 -> chunk [8, 13)
    (chunked(8), 1, 13, range(8, 13)),
    # hit at a chunk boundary needs nothing
    (chunked(8), 1, 16, range(16, 16)),
    # C=8, P=4: hit 5 pages = 20 tokens -> chunk starts at 16 = page 4
    (chunked(8), 4, 5, range(4, 5)),
    (chunked(8), 4, 4, range(4, 4)),
    # Mamba: the state after page h-1
    (mamba(interval=4), 1, 7, range(6, 7)),
    (mamba(interval=4), 1, 0, range(0)),
    (mamba(interval=8), 4, 2, range(1, 2)),
    # cross-attention needs no token pages
    (cross(), 1, 9, range(0)),
]


@pytest.mark.parametrize(("group", "P", "hit", "want"), NEEDED)
def test_needed_pages(group, P, hit, want) -> None:
    assert make_policy(group[0], P).needed_pages(hit) == want


# (spec factory, P, computed tokens) -> releasable page range
RELEASABLE = [
    (full(), 1, 100, range(0)),
    # W=4: next token at 10 reads [6, 10): pages 0..5 are out
    (swa(4), 1, 10, range(0, 6)),
    (swa(4), 1, 3, range(0)),
    # W=6, P=4, L=23: tokens below 17 -> whole pages 0..3 (page 4 = [16, 20) still read)
    (swa(6), 4, 23, range(0, 4)),
    # C=8, L=13: tokens below 8 -> pages 0..7 (P=1); P=4: pages 0, 1
    (chunked(8), 1, 13, range(0, 8)),
    (chunked(8), 4, 13, range(0, 2)),
    (chunked(8), 4, 7, range(0)),
    (mamba(), 1, 100, range(0)),
    (cross(), 1, 100, range(0)),
]


@pytest.mark.parametrize(("group", "P", "computed", "want"), RELEASABLE)
def test_releasable_pages(group, P, computed, want) -> None:
    assert make_policy(group[0], P).releasable_pages(computed) == want


X = None
# (spec factory, entries (page ids, X = missing), limit) -> largest servable hit in pages
MAX_HIT = [
    (full(), [1, 2, 3, 4], 4, 4),
    (full(), [1, 2, X, 4], 4, 2),
    (full(), [1, 2, 3, 4], 2, 2),
    # W=2: a hit at h needs pages h-2, h-1
    (swa(2), [X, X, 3, 4, 5], 5, 5),
    (swa(2), [1, 2, 3, X, 5], 5, 3),
    (swa(2), [X, 2, X, 4, X], 5, 0),
    (swa(2), [X, 2, 3, X, 5, 6], 6, 6),
    (swa(2), [X, 2, 3, X, 5, 6], 5, 3),
    # chunk 3: hit 6 needs nothing (boundary), hit 5 needs pages 3, 4
    (chunked(3), [X, X, X, X, X, X], 6, 6),
    (chunked(3), [X, X, X, 4, 5, X], 5, 5),
    (chunked(3), [X, X, X, X, 5, X], 5, 3),
    # Mamba: the state after page h-1 must be there
    (mamba(), [X, X, X, 4, X, X, X, 8], 8, 8),
    (mamba(), [X, X, X, 4, X, X, X, 8], 7, 4),
    (mamba(), [X, X, X, X], 4, 0),
    (cross(), [X, X], 2, 2),
]


@pytest.mark.parametrize(("group", "entries", "limit", "want"), MAX_HIT)
def test_max_hit(group, entries, limit, want) -> None:
    assert make_policy(group[0], 1).max_hit(entries, limit) == want


def test_max_hit_with_offset_treats_earlier_pages_as_present() -> None:
    # entries cover pages 3..7; pages 0..2 count as present.
    pol = make_policy(swa(4)[0], 1)
    assert pol.max_hit([10, 11, 12, None, 14], 8, offset=3) == 6
    assert make_policy(mamba()[0], 1).max_hit([None, None], 5, offset=3) == 3
    assert make_policy(full()[0], 1).max_hit([None], 4, offset=3) == 3


def test_mamba_checkpoints_on_page_boundaries() -> None:
    pol = make_policy(mamba(interval=8)[0], 4)
    assert [n for n in range(0, 33) if pol.is_checkpoint(n)] == [8, 16, 24, 32]  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        make_policy(mamba(interval=6)[0], 4)


def test_pages_for() -> None:
    assert make_policy(full()[0], 4).pages_for(9) == 3
    assert make_policy(mamba()[0], 4).pages_for(9) == 1
    assert make_policy(cross(encoder_tokens=6404)[0], 16).pages_for(6404) == 401
