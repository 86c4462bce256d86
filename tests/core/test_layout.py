"""LCM layout: the real-model table, the padding rule, and the page-id <-> byte conventions."""

from __future__ import annotations

import pytest
from corekit import full, make_model, mamba, swa

from sglang_jenga.core import (
    MODELS,
    FullAttentionSpec,
    MambaSpec,
    ModelSpec,
    PageKind,
    gated_delta_net_state_bytes,
    mamba2_state_bytes,
    plan_layout,
)

# (model, P) -> (large page bytes, {type: (page bytes, pages per large, padding bytes per page)}).
# Hand-computed: token bytes = layers * 2 * kv_heads * head_dim * 2 (bf16); see shapes.py for the configs.
REAL = {
    ("llama-3.1-8b", 1): (131072, {"full": (131072, 1, 0)}),
    ("llama-3.1-8b", 64): (8388608, {"full": (8388608, 1, 0)}),
    # 10 full x 8192 = 81,920; 52 swa x 8192 = 425,984; lcm = 2^15 * 65 = 2,129,920.
    ("gemma-3-27b", 1): (2129920, {"full": (81920, 26, 0), "swa": (425984, 5, 0)}),
    ("gemma-3-27b", 16): (34078720, {"full": (1310720, 26, 0), "swa": (6815744, 5, 0)}),
    # 18 x 2*8*64*2 = 36,864 for both types.
    ("gpt-oss-120b", 1): (36864, {"full": (36864, 1, 0), "swa": (36864, 1, 0)}),
    ("gpt-oss-120b", 64): (2359296, {"full": (2359296, 1, 0), "swa": (2359296, 1, 0)}),
    # 12 x 4096 = 49,152 and 36 x 4096 = 147,456.
    ("llama-4-scout", 1): (147456, {"full": (49152, 3, 0), "chunked": (147456, 1, 0)}),
    ("llama-4-scout", 16): (2359296, {"full": (786432, 3, 0), "chunked": (2359296, 1, 0)}),
    # 9 x 4096 = 36,864 and 27 x 4096 = 110,592.
    ("ministral-8b", 1): (110592, {"full": (36864, 3, 0), "swa": (110592, 1, 0)}),
    # 32 x 4096 = 131,072 and 8 cross x 4096 = 32,768 per encoder token.
    ("mllama-11b", 1): (131072, {"full": (131072, 1, 0), "cross": (32768, 4, 0)}),
    ("mllama-11b", 16): (2097152, {"full": (2097152, 1, 0), "cross": (524288, 4, 0)}),
    # 12 x 2*2*256*2 = 24,576; state 36 x 2,146,304 = 77,266,944 = 3,144 x 24,576 (no padding needed).
    ("qwen3-next-80b-a3b", 1): (77266944, {"full": (24576, 3144, 0), "linear": (77266944, 1, 0)}),
    # A = 1,572,864; plain lcm 618,135,552 > 64 MiB -> state padded to 50 x A = 78,643,200.
    ("qwen3-next-80b-a3b", 64): (78643200, {"full": (1572864, 50, 0), "linear": (78643200, 1, 1376256)}),
    # 4 x 4096 = 16,384; state 24 x 4,255,744 = 102,137,856 = 6,234 x 16,384.
    ("nemotron-h-8b", 1): (102137856, {"full": (16384, 6234, 0), "mamba": (102137856, 1, 0)}),
    # A = 262,144: 389.6 -> 390 x A = 102,236,160; A = 1 MiB: 98 MiB = 102,760,448.
    ("nemotron-h-8b", 16): (102236160, {"full": (262144, 390, 0), "mamba": (102236160, 1, 98304)}),
    ("nemotron-h-8b", 64): (102760448, {"full": (1048576, 98, 0), "mamba": (102760448, 1, 622592)}),
    # one-layer draft: 4,096 B/token, 32 per large page of the target.
    ("llama-3.1-8b+eagle", 1): (131072, {"full": (131072, 1, 0), "draft_full": (4096, 32, 0)}),
}


@pytest.mark.parametrize(("model", "P"), sorted(REAL))
def test_real_model_layout_table(model: str, P: int) -> None:
    large, types = REAL[(model, P)]
    layout = plan_layout(MODELS[model], P)
    assert layout.large_page_bytes == large
    got = {t.name: (t.page_bytes, t.pages_per_large, t.padding_bytes_per_page) for t in layout.types}
    assert got == types
    for t in layout.types:
        assert t.page_bytes * t.pages_per_large == large


def test_every_real_model_is_in_the_table() -> None:
    assert {m for m, _ in REAL} == set(MODELS)


def test_state_bytes_from_public_configs() -> None:
    # Qwen3-Next gated delta net: conv (2*16*128 + 32*128) * 3 * 2 + 32*128*128*4.
    assert gated_delta_net_state_bytes(num_k_heads=16, k_head_dim=128, num_v_heads=32, v_head_dim=128,
                                       conv_kernel=4) == 49152 + 2097152
    # Nemotron-H-8B Mamba2: conv (8192 + 2*8*128) * 3 * 2 + 128*64*128*4.
    assert mamba2_state_bytes(num_heads=128, head_dim=64, state_size=128, n_groups=8,
                              conv_kernel=4) == 61440 + 4194304
    # bf16 SSM state halves the SSM part.
    assert mamba2_state_bytes(num_heads=128, head_dim=64, state_size=128, n_groups=8, conv_kernel=4,
                              ssm_dtype_bytes=2) == 61440 + 2097152


def test_qwen3_next_padding_is_reported() -> None:
    layout = plan_layout(MODELS["qwen3-next-80b-a3b"], 64)
    assert layout.attention_lcm_bytes == 1572864
    assert layout.unpadded_lcm_bytes == 618135552
    linear = layout.type("linear")
    assert linear.raw_page_bytes == 77266944
    assert linear.padding_fraction == pytest.approx(1376256 / 78643200)


def test_no_padding_when_lcm_fits_the_bound() -> None:
    # A = 6 (3 swa layers x 2 B), state 10 -> lcm 30.
    model = make_model(swa(4, layers=3), mamba(state_bytes=10))
    layout = plan_layout(model, 1, max_large_page_bytes=30)
    assert layout.large_page_bytes == 30
    assert [t.page_bytes for t in layout.types] == [6, 10]


def test_state_padded_to_multiple_of_attention_lcm() -> None:
    model = make_model(swa(4, layers=3), mamba(state_bytes=10))
    layout = plan_layout(model, 1, max_large_page_bytes=20)
    # 10 -> ceil(10/6)*6 = 12; large = lcm(6, 12) = 12.
    assert layout.large_page_bytes == 12
    m = layout.type("mamba")
    assert (m.raw_page_bytes, m.page_bytes, m.pages_per_large, m.padding_bytes_per_page) == (10, 12, 1, 2)
    assert layout.type("swa").pages_per_large == 2


def test_several_state_types_padded_to_the_largest() -> None:
    # A = 4 (2 full layers); states 6 and 10 -> 8 and 12 -> lcm 24 > bound 10 -> both 12.
    model = make_model(full(layers=2), mamba(state_bytes=6, name="m1"), mamba(state_bytes=10, name="m2"))
    layout = plan_layout(model, 1, max_large_page_bytes=10)
    assert layout.large_page_bytes == 12
    assert [(t.page_bytes, t.padding_bytes_per_page) for t in layout.types] == [(4, 0), (12, 6), (12, 2)]


def test_attention_pages_are_never_padded() -> None:
    # full 2 B, swa 3 layers = 6 B per token: lcm 6 even with a tiny bound.
    layout = plan_layout(make_model(full(), swa(4, layers=3)), 1, max_large_page_bytes=1)
    assert layout.large_page_bytes == 6
    assert [t.padding_bytes_per_page for t in layout.types] == [0, 0]


def test_page_id_byte_offset_conventions() -> None:
    layout = plan_layout(MODELS["gemma-3-27b"], 16)
    for name in ("full", "swa"):
        t = layout.type(name)
        for page in (0, 1, t.pages_per_large - 1, t.pages_per_large, 7 * t.pages_per_large + 3):
            loc = layout.locate(name, page)
            assert loc.large_page == page // t.pages_per_large
            assert loc.byte_offset == page * t.page_bytes
            assert loc.large_page * layout.large_page_bytes <= loc.byte_offset < (loc.large_page + 1) * (
                layout.large_page_bytes)
            assert layout.page_at(name, loc.byte_offset) == page
    # full page 27 is large page 1 (26 per large), slot 1, at 27 * 1,310,720 bytes.
    assert layout.locate("full", 27) == (1, 27 * 1310720)
    with pytest.raises(ValueError):
        layout.page_at("full", 1310720 + 1)


def test_slot_rows_and_layer_offsets() -> None:
    layout = plan_layout(MODELS["gemma-3-27b"], 16)
    assert layout.slot("swa", 3, 5) == 3 * 16 + 5
    with pytest.raises(ValueError):
        layout.slot("swa", 3, 16)
    # a token row of "full": 10 layers x (K 4096 B + V 4096 B); the row index times the stride is the byte
    # offset of that token, consistent with the page id convention.
    assert layout.row_stride_bytes("full") == 81920
    assert layout.layer_offset_bytes("full", 9) == 9 * 8192
    row = layout.slot("full", 27, 0)
    assert row * layout.row_stride_bytes("full") == layout.locate("full", 27).byte_offset
    qwen = plan_layout(MODELS["qwen3-next-80b-a3b"], 64)
    assert qwen.row_stride_bytes("linear") == 78643200
    assert qwen.layer_offset_bytes("linear", 2) == 2 * 2146304
    with pytest.raises(ValueError):
        qwen.layer_offset_bytes("linear", 36)


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        FullAttentionSpec(kv_heads=0, head_dim=128)
    with pytest.raises(ValueError):
        ModelSpec.of("dup", [(FullAttentionSpec(kv_heads=1, head_dim=1), 1)] * 2)
    with pytest.raises(ValueError):
        MambaSpec(state_bytes_per_layer=0)
    assert MambaSpec(state_bytes_per_layer=1).kind is PageKind.STATE
    assert MODELS["llama-3.1-8b+eagle"].group("draft_full").spec.draft
