"""Jenga's sglang adapter at sglang's `--page-size` P > 1, driven through sglang's paged allocation functions
(adapterkit): a small page of a token type holds P tokens, a request's new tokens fill the page its row ends in
before a new page is taken, the tree keeps whole pages only (the partial last page stays the request's and goes
back when it leaves), and SWA pages pair with full pages row by row. Exact slot numbers; integrity after every
step. The Hypothesis machine at P = 4 is `TestSwaPaged` in test_adapter_stateful.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from adapterkit import (
    _assert_all_free,
    _assert_integrity,
    _make_full,
    _make_req,
    _make_swa,
    admit,
    decode,
    extend,
    finish,
    flush,
    own_pages,
    row,
    slide,
    swa_evicted,
)
from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

from sglang_jenga.adapter import buffer, build

P = 4


def test_chunks_fill_the_rows_page_before_a_new_one() -> None:
    """Full attention only, a small page = a large page of 4 tokens (slots 4k + 4 .. 4k + 7 for core page k):
    chunks of 6 and 4 tokens take pages 0, 1, then 2 for tokens 8-9 (tokens 6-7 fill page 1); the tree keeps
    the whole pages of each checkpoint, the request its partial page."""
    rig = _make_full(num_large=8, page_size=P)
    a = _make_req(rig, list(range(10)))
    assert admit(rig, a) == 0
    extend(rig, [(a, 6)])
    assert row(rig, a) == [4, 5, 6, 7, 8, 9]
    assert a.kv.cache_protected_len == 4 and own_pages(rig, a, "full") == [1]  # page 0 is the tree's
    _assert_integrity(rig, [a])
    extend(rig, [(a, 10)])
    assert row(rig, a) == list(range(4, 14))
    assert a.kv.cache_protected_len == 8 and own_pages(rig, a, "full") == [2]
    _assert_integrity(rig, [a])
    finish(rig, a)  # tokens 8-9 are a partial page: freed, not cached
    stats = rig.manager.allocator.of("full")
    assert stats.pages_used == 2 and rig.manager.tree.cached_pages == [2]
    _assert_integrity(rig)


def test_hit_is_page_aligned_and_decode_takes_a_page_at_each_boundary() -> None:
    """A second request with the same 10-token prompt hits 8 tokens (two whole pages, the first one's slots);
    decoding to 16 tokens takes one new page for tokens 12-15, none for 10 and 11."""
    rig = _make_full(num_large=8, page_size=P)
    a = _make_req(rig, list(range(10)))
    admit(rig, a)
    extend(rig, [(a, 10)])
    finish(rig, a)
    b = _make_req(rig, list(range(10)))
    assert admit(rig, b) == 8
    extend(rig, [(b, 10)])
    assert row(rig, b, 0, 8) == list(range(4, 12))
    tail = row(rig, b, 8)
    assert tail[1] == tail[0] + 1 and tail[0] % P == 0  # a new page's first two slots
    used = rig.manager.allocator.of("full").pages_used
    decode(rig, [b])
    decode(rig, [b])
    assert rig.manager.allocator.of("full").pages_used == used
    assert row(rig, b, 8) == list(range(tail[0], tail[0] + 4))
    decode(rig, [b])
    assert rig.manager.allocator.of("full").pages_used == used + 1
    assert row(rig, b, 12)[0] % P == 0
    _assert_integrity(rig, [b])
    finish(rig, b)
    flush(rig)
    _assert_all_free(rig)


def test_swa_pages_pair_row_by_row_and_leave_the_window_whole() -> None:
    """Full + sliding window 4 at P = 4: every full slot of a request maps to the slot at the same offset of its
    SWA page; releasing the window frees SWA pages only whole (the cursor is a multiple of P) and keeps the
    window's pages paired (adapterkit's integrity check)."""
    rig = _make_swa(num_large=16, window=4, page_size=P)
    a = _make_req(rig, list(range(9)))
    admit(rig, a)
    extend(rig, [(a, 9)])
    mapping = rig.allocator.full_to_swa_index_mapping
    for slot in row(rig, a, 8):  # its own page (the first two are the tree's now)
        assert int(mapping[slot]) % P == slot % P
    for _ in range(10):
        decode(rig, [a])
        slide(rig, [a])
        assert swa_evicted(a) % P == 0
        _assert_integrity(rig, [a])
    assert swa_evicted(a) >= 8  # tokens 0-7 lie wholly outside the window of token 19
    finish(rig, a)
    flush(rig)
    _assert_all_free(rig)


@pytest.mark.parametrize(("state", "cross", "kind"), [(True, False, "Mamba/linear-attention"),
                                                      (False, True, "cross-attention")])
def test_page_size_with_state_or_cross_attention_layers_is_refused(monkeypatch: pytest.MonkeyPatch, state: bool,
                                                                   cross: bool, kind: str) -> None:
    """Jenga pages Mamba states and cross-attention with --page-size 1 only: start-up names the flag."""
    monkeypatch.setattr(build, "mamba_args", lambda: (None, False, False))
    text = SimpleNamespace(cross_attention_layers=[1] if cross else None)
    mc = SimpleNamespace(hf_config=SimpleNamespace(architectures=["TinyForCausalLM"]), hf_text_config=text,
                         v_head_dim=8, head_dim=8)
    kvc = SimpleNamespace(model_config=mc, is_draft_worker=False, mambaish_config=object() if state else None,
                          spec_algorithm=SpeculativeAlgorithm.NONE, is_hybrid_swa=False, use_mla_backend=False,
                          is_hybrid_swa_compress=False, kv_cache_dtype=build._SUPPORTED_DTYPES[0], page_size=16)
    with pytest.raises(build.UnsupportedModelError, match=f"--page-size 16 with TinyForCausalLM's {kind} layers"):
        build._reject_unsupported(kvc, pipelined=False)
    kvc.page_size = 1
    build._reject_unsupported(kvc, pipelined=False)


def test_flat_alloc_takes_whole_pages() -> None:
    """sglang's paged `alloc(n)` (outside the request flows): n a multiple of P, whole pages; freed by slots."""
    rig = _make_swa(num_large=8, window=4, page_size=P)
    slots = rig.allocator.alloc(8).tolist()
    assert len(slots) == 8 and slots[0] % P == 0 and slots[4] % P == 0
    assert slots[:4] == list(range(slots[0], slots[0] + 4)) and slots[4:] == list(range(slots[4], slots[4] + 4))
    with pytest.raises(ValueError, match="not whole pages"):
        rig.allocator.alloc(6)
    rig.allocator.free(torch.tensor(slots))
    _assert_integrity(rig)
    flush(rig)
    _assert_all_free(rig)


@pytest.mark.parametrize("page_size", [1, P])
def test_slots_of_few_and_many_pages_are_the_same_arithmetic(page_size: int) -> None:
    """`to_slots` builds a decode step's few one-row pages through a C array and long lists through numpy; both
    give slot (page + pages per large page) * P + j, int64, and `to_pages` takes them back."""
    jenga = _make_swa(num_large=600, window=4, page_size=page_size).jenga
    for name in ("full", "swa"):
        k = jenga.layout.type(name).pages_per_large
        for pages in ([], [7], [9, 3, 11], list(range(5, 5 + buffer.SMALL + 3))):
            slots = jenga.to_slots(name, pages)
            assert slots.dtype == torch.int64
            assert slots.tolist() == [(p + k) * page_size + j for p in pages for j in range(page_size)]
            assert jenga.to_pages(name, slots) == pages
