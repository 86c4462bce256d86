"""Speculative decoding's draft KV in jenga's rows (adapter/build.py `configure_draft`), below the server.

A draft model's layers are stored in the rows of the target's type with the same policy, after the target's
layers: the draft worker's pool is sglang's own pool class (`MHATokenToKVPool`, `SWAKVPool`) over those views, so
its attention reads the same slots as the target's (sglang indexes both pools with the target's slots).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from adapterkit import DTYPE, GEO, HEAD_DIM, HEADS, _make_layers, _make_rig_of, admit, extend, finish
from adapterkit import _make_req as make_req
from sglang.srt.model_executor.pool_configurator import MemoryPoolConfig

from sglang_jenga.adapter import build
from sglang_jenga.adapter.build import UnsupportedModelError, configure_draft
from sglang_jenga.adapter.stats import jenga_stats
from sglang_jenga.core import FullAttentionSpec, SlidingWindowSpec

ROW_LAYER = 2 * HEADS * HEAD_DIM * 2  # bytes of one layer's K and V in a row (bf16)


def _rig(draft: dict[str, int]) -> Any:
    """Full (3 layers) + sliding window 4 (4 layers), plus `draft` layers per type in the same rows."""
    layers = _make_layers((FullAttentionSpec(**GEO), [0, 2, 4]), (SlidingWindowSpec(window=4, **GEO), [1, 3, 5, 6]))
    return _make_rig_of("swa", dataclasses.replace(layers, draft=draft), 32, 8, window=4)


def _draft_kvc(rig: Any, full_ids: list[int], swa_ids: list[int]) -> Any:
    """What sglang's draft configurator carries, for a draft with these layers."""
    ids = full_ids + swa_ids
    return SimpleNamespace(
        token_to_kv_pool_allocator=rig.allocator, kv_cache_dtype=DTYPE, device="cpu", req_to_token_pool=rig.req_pool,
        layer_info=SimpleNamespace(start_layer=0, end_layer=max(ids) + 1, full_attention_layer_ids=full_ids,
                                   swa_attention_layer_ids=swa_ids or None),
        model_config=SimpleNamespace(get_num_kv_heads=lambda tp, dcp: HEADS, head_dim=HEAD_DIM),
        memory_pool_config=MemoryPoolConfig(max_total_num_tokens=100, max_running_requests=8),
    )


@pytest.fixture(autouse=True)
def _one_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "parallel_sizes", lambda: (1, 1))


def _offset(view: torch.Tensor, rig: Any) -> int:
    """Byte offset of a layer view's row 0 in the jenga buffer."""
    return view.data_ptr() - rig.jenga.data.data_ptr()


def test_draft_layers_follow_the_targets_in_each_row() -> None:
    rig = _rig({"full": 1, "swa": 2})
    assert rig.jenga.row_bytes("full") == 4 * ROW_LAYER and rig.jenga.row_bytes("swa") == 6 * ROW_LAYER
    target = rig.allocator.get_kvcache()
    draft = configure_draft(_draft_kvc(rig, [0], [1, 2])).token_to_kv_pool
    full_row0 = _offset(target.full_kv_pool.k_buffer[0], rig)
    swa_row0 = _offset(target.swa_kv_pool.k_buffer[0], rig)
    assert [_offset(target.full_kv_pool.k_buffer[i], rig) - full_row0 for i in range(3)] == [0, 8, 16]
    assert _offset(draft.get_key_buffer(0), rig) - full_row0 == 3 * ROW_LAYER
    assert _offset(draft.get_value_buffer(0), rig) - full_row0 == 3 * ROW_LAYER + ROW_LAYER // 2
    assert [_offset(draft.get_key_buffer(i), rig) - swa_row0 for i in (1, 2)] == [4 * ROW_LAYER, 5 * ROW_LAYER]
    assert draft.get_key_buffer(0).stride() == target.full_kv_pool.k_buffer[0].stride()


def test_draft_reads_the_targets_slots_and_survives_a_prefix_hit() -> None:
    """The draft's KV written at a request's slots is found again by a request that hits its prefix: the row,
    draft layers included, is the tree's."""
    rig = _rig({"full": 1, "swa": 2})
    draft = configure_draft(_draft_kvc(rig, [0], [1, 2])).token_to_kv_pool
    tokens = list(range(1, 13))
    first = make_req(rig, tokens)
    assert admit(rig, first) == 0
    slots = extend(rig, [(first, len(tokens))])
    values = torch.arange(len(slots), dtype=DTYPE).reshape(-1, 1, 1).expand(-1, HEADS, HEAD_DIM) + 1
    draft.get_key_buffer(0)[slots] = values
    swa_slots = draft.translate_loc_from_full_to_swa(slots)
    draft.get_key_buffer(2)[swa_slots] = -values
    finish(rig, first)
    second = make_req(rig, tokens + [99])
    assert admit(rig, second) == 12
    extend(rig, [(second, 13)])
    hit = rig.req_pool.req_to_token[second.kv.req_pool_idx, :12].long()
    assert torch.equal(hit, slots.long())
    assert torch.equal(draft.get_key_buffer(0)[hit], values)
    window = draft.translate_loc_from_full_to_swa(hit[-4:])  # the window the tree keeps
    assert bool((window > 0).all())
    assert torch.equal(draft.get_key_buffer(2)[window], -values[-4:])
    stats = jenga_stats(rig.jenga, rig.cache)["types"]
    assert (stats["full"]["draft_layers"], stats["swa"]["draft_layers"]) == (1, 2)
    assert stats["full"]["draft_bytes_used"] == stats["full"]["bytes_used"] // 4


def test_full_attention_only_draft_gets_an_mha_pool() -> None:
    rig = _rig({"full": 2})
    draft = configure_draft(_draft_kvc(rig, [0, 1], [])).token_to_kv_pool
    target = rig.allocator.get_kvcache()
    assert type(draft).__name__ == "JengaMHAPool" and draft.layer_num == 2
    assert _offset(draft.get_key_buffer(1), rig) - _offset(target.full_kv_pool.k_buffer[0], rig) == 4 * ROW_LAYER


def test_a_draft_unlike_the_plan_is_refused() -> None:
    rig = _rig({"full": 1})
    with pytest.raises(UnsupportedModelError, match="draft model has 2 full-attention"):
        configure_draft(_draft_kvc(rig, [0, 1], []))
    with pytest.raises(UnsupportedModelError, match="draft KV dtype"):
        configure_draft(SimpleNamespace(**{**vars(_draft_kvc(rig, [0], [])), "kv_cache_dtype": torch.float16}))


@pytest.mark.parametrize(("state", "cross", "pipelined", "names"), [
    (True, False, False, "--speculative-algorithm with TinyForCausalLM's Mamba/linear-attention layers"),
    (False, True, False, "--speculative-algorithm with TinyForCausalLM's cross-attention layers"),
    (False, False, True, "--speculative-algorithm with --pp-size"),
])
def test_speculation_where_jenga_cannot_keep_the_draft_state_is_refused(
        monkeypatch: pytest.MonkeyPatch, state: bool, cross: bool, pipelined: bool, names: str) -> None:
    """Verify writes per-draft-token Mamba states jenga's state pool does not keep; cross-attention and pipeline
    stages have no draft rows: start-up names the combination."""
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    monkeypatch.setattr(build, "mamba_args", lambda: (None, False, False))
    mc = SimpleNamespace(hf_config=SimpleNamespace(architectures=["TinyForCausalLM"]), v_head_dim=8, head_dim=8,
                         hf_text_config=SimpleNamespace(cross_attention_layers=[1] if cross else None))
    kvc = SimpleNamespace(model_config=mc, is_draft_worker=False, mambaish_config=object() if state else None,
                          spec_algorithm=SpeculativeAlgorithm.EAGLE3, is_hybrid_swa=False, use_mla_backend=False,
                          is_hybrid_swa_compress=False, kv_cache_dtype=build._SUPPORTED_DTYPES[0], page_size=1)
    with pytest.raises(UnsupportedModelError, match=names):
        build._reject_unsupported(kvc, pipelined=pipelined)
    kvc.spec_algorithm = SpeculativeAlgorithm.NONE
    build._reject_unsupported(kvc, pipelined=pipelined)  # the same model without speculation starts
