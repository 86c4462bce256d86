"""sglang's own PrefillAdder over jenga's pools: what it admits into one prefill batch must then allocate.

A Mamba hybrid's new request needs a state slot as well as its tokens, and both come from the shared large
pages. Full-attention slots free inside a running request's large pages cannot hold a state, so admission
must ask whether the tokens and the states fit together, not count the states in token slots (the crash this
guards against: `HybridReqToTokenPool.alloc`'s "Not enough space for mamba cache" after the adder admitted
one request too many, seen in tests/server/test_mamba_pressure.py's burst).
"""

from __future__ import annotations

from adapterkit import MAMBA, _assert_integrity, _make_req, _make_rig, admit, alloc_extend, extend, finish, flush
from sglang.srt.managers.schedule_policy import AddReqResult, PrefillAdder


def _adder(rig) -> PrefillAdder:
    return PrefillAdder(page_size=1, tree_cache=rig.cache, token_to_kv_pool_allocator=rig.allocator,
                        running_batch=None, new_token_ratio=1.0, rem_input_tokens=4096, rem_chunk_tokens=None)


def _queued(rig, n: int, first: int) -> list:
    """`n` one-token requests (one new token each), matched and locked."""
    reqs = [_make_req(rig, [first + k]) for k in range(n)]
    for r in reqs:
        r.sampling_params.max_new_tokens = 1
        admit(rig, r)
    return reqs


def test_admission_counts_states_and_tokens_together() -> None:
    """12 large pages; a state fills one (1 per large page), 13 full slots fill another. Four running requests
    hold a state page and a token page each (12 free full slots in each token page), and the tree a checkpoint
    copy of each state (evictable): four new states fit after evicting those, a fifth does not, however many
    full slots are free (48, more than 3 states' worth)."""
    rig = _make_rig("mamba", num_large=12)
    assert (rig.per_large("full"), rig.per_large(MAMBA)) == (13, 1)
    running = _queued(rig, 4, 100)
    extend(rig, [(r, 1) for r in running])
    assert rig.manager.allocator.large_pages_free == 0 and rig.cache.mamba_evictable_size() == 4
    assert rig.allocator.available_size() == 4 * 12  # full slots free in the running requests' pages

    queued = _queued(rig, 6, 200)
    adder = _adder(rig)
    results = [adder.add_one_req(r, has_chunked_req=False, truncation_align_size=None) for r in queued]
    assert results[:4] == [AddReqResult.CONTINUE] * 4 and results[4] != AddReqResult.CONTINUE, results
    assert adder.can_run_list == queued[:4]
    alloc_extend(rig, [(r, 1) for r in adder.can_run_list])  # what was admitted allocates (evicting the copies)
    _assert_integrity(rig, running + queued[:4])
    assert rig.cache.mamba_evictable_size() == 0

    for r in running + queued[:4]:
        finish(rig, r)
    flush(rig)


def test_admission_counts_evictable_states() -> None:
    """Two finished one-token requests leave their 2 states cached and 2 large pages free: admission counts the
    cached states as room, admits four one-token requests (2 states in the free pages, 2 in the evicted ones)
    and refuses a fifth, and the admitted batch allocates by evicting them."""
    rig = _make_rig("mamba", num_large=6)
    done = _queued(rig, 2, 100)
    extend(rig, [(r, 1) for r in done])
    for r in done:
        finish(rig, r)
    assert rig.cache.mamba_evictable_size() == 2 and rig.manager.allocator.large_pages_free == 2

    queued = _queued(rig, 6, 300)
    adder = _adder(rig)
    results = [adder.add_one_req(r, has_chunked_req=False, truncation_align_size=None) for r in queued]
    assert results[:4] == [AddReqResult.CONTINUE] * 4 and results[4] != AddReqResult.CONTINUE, results
    alloc_extend(rig, [(r, 1) for r in adder.can_run_list])
    _assert_integrity(rig, queued[:4])
    for r in queued[:4]:
        finish(rig, r)
    flush(rig)
