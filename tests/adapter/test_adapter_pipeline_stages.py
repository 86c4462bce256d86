"""Pipeline stages: one layout planned alike on every stage, each stage storing only its own layers
(adapter/buffer.py `stage_rows`, adapter/build.py `ModelLayers`). No server: the geometry through the buffer's own
per-layer views, and the pools of a stage built by build.py's builders."""

from __future__ import annotations

import pytest
import torch
from adapterkit import DTYPE, GEO, HEAD_DIM, HEADS

from sglang_jenga.adapter.buffer import JengaBuffer, stage_rows
from sglang_jenga.adapter.build import LayerGroup, ModelLayers, build_pools
from sglang_jenga.core import FullAttentionSpec, SlidingWindowSpec, plan_layout

CELL = 2 * HEADS * HEAD_DIM * 2  # K + V of one token in one layer: 8 B
# mellum's pattern (3 sliding-window layers, then 1 full) over 2 stages, as sglang splits 4 layers.
GROUPS = (LayerGroup(FullAttentionSpec(**GEO), (3,)), LayerGroup(SlidingWindowSpec(window=4, **GEO), (0, 1, 2)))
STAGES = (range(0, 2), range(2, 4))


def _layers(stage: range) -> ModelLayers:
    return ModelLayers(GROUPS, HEADS, HEAD_DIM, DTYPE, stage, STAGES)


def _buffer(stage: range, num_large: int = 8, page_size: int = 1) -> JengaBuffer:
    layers = _layers(stage)
    return JengaBuffer(plan_layout(layers.model_spec("mellum"), page_size), num_large, "cpu", layers.stage_layers())


def test_every_stage_plans_the_most_layers_any_stage_holds() -> None:
    specs = [_layers(s).model_spec("mellum") for s in STAGES]
    assert specs[0] == specs[1]
    assert {g.spec.name: g.num_layers for g in specs[0].groups} == {"full": 1, "swa": 2}
    assert [_layers(s).stage_layers() for s in STAGES] == [{"full": 0, "swa": 2}, {"full": 1, "swa": 1}]


def test_stage_rows() -> None:
    layout = plan_layout(_layers(STAGES[0]).model_spec("mellum"), 1)
    assert layout.large_page_bytes == 2 * CELL  # 2 full pages of 8 B = 1 sliding-window page of 16 B
    own = stage_rows(layout)
    assert own.large_page_bytes == 16 and own.rows == {"full": (8, 1), "swa": (16, 2)}
    # Padded to ALIGN: a large page is a multiple of lcm(2 x 64, 1 x 64) = 128 B.
    stage0, stage1 = (stage_rows(layout, _layers(s).stage_layers()) for s in STAGES)
    assert stage0.large_page_bytes == 128 and stage0.rows == {"full": (64, 0), "swa": (128, 2)}
    assert stage1.large_page_bytes == 128 and stage1.rows == {"full": (64, 1), "swa": (128, 1)}
    with pytest.raises(ValueError, match="a stage of 2 of its 1 layers"):
        stage_rows(layout, {"full": 2, "swa": 0})


def test_stage_rows_at_page_size_4() -> None:
    """At --page-size 4 a small page holds 4 rows: the same row strides, large pages 4x (rows per large page:
    full 2 x 4, swa 1 x 4, so a multiple of lcm(8 x 64, 4 x 64) = 512 B)."""
    layout = plan_layout(_layers(STAGES[0]).model_spec("mellum"), 4)
    assert layout.large_page_bytes == 4 * 2 * CELL
    own = stage_rows(layout)
    assert own.large_page_bytes == 64 and own.rows == {"full": (8, 1), "swa": (16, 2)}
    stage0, stage1 = (stage_rows(layout, _layers(s).stage_layers()) for s in STAGES)
    assert stage0.large_page_bytes == 512 and stage0.rows == {"full": (64, 0), "swa": (128, 2)}
    assert stage1.large_page_bytes == 512 and stage1.rows == {"full": (64, 1), "swa": (128, 1)}


@pytest.mark.parametrize("page_size", [1, 4])
@pytest.mark.parametrize("stage", STAGES, ids=["stage0", "stage1"])
def test_each_row_stays_in_its_large_page(stage: range, page_size: int) -> None:
    """Every byte a stage's per-layer views give a row lies in that row's large page, and rows of one type do not
    overlap: with the allocator giving a large page to one type at a time, no two pages share a byte."""
    jenga = _buffer(stage, page_size=page_size)
    large, base = jenga.stage.large_page_bytes, jenga.data.data_ptr()
    assert jenga.nbytes == 9 * large
    for t in jenga.layout.types:
        ks, vs = jenga.kv_views(t.name, DTYPE, HEADS, HEAD_DIM)
        assert len(ks) == len(vs) == jenga.stage.rows[t.name].layers
        spans = []
        for r in range(jenga.num_rows(t.name)):
            starts = [v[r].data_ptr() - base for v in ks + vs]
            lo, hi = (min(starts), max(starts) + HEADS * HEAD_DIM * 2) if starts else (None, None)
            if lo is None:
                continue
            per_large = t.pages_per_large * page_size  # rows of a large page
            assert r // per_large * large <= lo and hi <= (r // per_large + 1) * large, (t.name, r)
            spans.append((lo, hi))
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), t.name


def test_a_stage_pools_hold_its_layers_only() -> None:
    """Stage 1's sglang pool (build.py's builder) maps each of its global layer ids to its own views, and writes
    through one land in that layer's bytes of the row, leaving the other type's large pages alone."""
    layers = _layers(STAGES[1])
    jenga = _buffer(STAGES[1])
    pool = build_pools(jenga, layers, "cpu", (2, 4)).pool
    full_slot = jenga.to_slots("full", jenga.alloc_one_type("full", 1)).item()
    swa_slot = jenga.to_slots("swa", jenga.alloc_one_type("swa", 1)).item()
    for layer_id, slot, value in ((3, full_slot, 1.0), (2, swa_slot, 2.0)):
        k, v = pool.get_kv_buffer(layer_id)
        k[slot] = value
        v[slot] = -value
    stored = jenga.data.view(DTYPE)
    assert int((stored == 1.0).sum()) == int((stored == -1.0).sum()) == HEADS * HEAD_DIM
    assert int((stored == 2.0).sum()) == int((stored == -2.0).sum()) == HEADS * HEAD_DIM
    assert torch.count_nonzero(stored) == 4 * HEADS * HEAD_DIM
