"""Real model shapes (public configs), as `ModelSpec`s, for layout tests and benchmarks.

KV is bf16 (2 bytes). Recurrent states use sglang 0.5.23's defaults (conv state bf16, SSM state float32, see
`mamba2_state_bytes`); that is what sglang would allocate, and the brief's "bf16 everywhere" would halve the
SSM part. Head counts are the full model's (tensor-parallel size 1). Layers with no cache (MLP blocks, vision
tower) are left out. Values come from each model's HF config.json as we recall them; the ones we are less sure
of carry a comment saying so.
"""

from __future__ import annotations

from .specs import (
    ChunkedLocalSpec,
    CrossAttentionSpec,
    FullAttentionSpec,
    MambaSpec,
    ModelSpec,
    SlidingWindowSpec,
    gated_delta_net_state_bytes,
    mamba2_state_bytes,
)

# Llama-3.1-8B: num_hidden_layers 32, num_key_value_heads 8, head_dim 128 (4096 / 32 heads).
LLAMA_3_1_8B = ModelSpec.of("llama-3.1-8b", [(FullAttentionSpec(kv_heads=8, head_dim=128), 32)])

# Gemma-3-27B: 62 layers, num_attention_heads 32, num_key_value_heads 16, head_dim 128, sliding_window 1024,
# sliding_window_pattern 6 (layer i is global iff (i+1) % 6 == 0): globals 5, 11, ..., 59 -> 10 full, 52
# local.
GEMMA_3_27B = ModelSpec.of("gemma-3-27b", [
    (FullAttentionSpec(kv_heads=16, head_dim=128), 10),
    (SlidingWindowSpec(kv_heads=16, head_dim=128, window=1024), 52),
])

# gpt-oss-120b: 36 layers, layer_types alternate sliding_attention / full_attention (18 + 18),
# num_key_value_heads 8, head_dim 64, sliding_window 128. (Attention sinks are weights, not cache.)
GPT_OSS_120B = ModelSpec.of("gpt-oss-120b", [
    (FullAttentionSpec(kv_heads=8, head_dim=64), 18),
    (SlidingWindowSpec(kv_heads=8, head_dim=64, window=128), 18),
])

# Llama-4-Scout-17B-16E: 48 layers, num_key_value_heads 8, head_dim 128, attention_chunk_size 8192; every 4th
# layer is a NoPE global (full) layer (no_rope_layers), the other 36 use chunked local attention.
LLAMA_4_SCOUT = ModelSpec.of("llama-4-scout", [
    (FullAttentionSpec(kv_heads=8, head_dim=128), 12),
    (ChunkedLocalSpec(kv_heads=8, head_dim=128, chunk=8192), 36),
])

# Ministral-8B-Instruct-2410: 36 layers, num_key_value_heads 8, head_dim 128, sliding_window 32768.
# Interleaved pattern 1 full : 3 sliding (transformers' Ministral docs) -> 9 full, 27 sliding. Less sure: the
# HF config.json itself only lists one sliding_window; the 1:3 pattern also matches the Jenga paper's 56.25%
# waste figure for 128k requests (27/36 layers * 96k/128k out-of-window tokens = 0.5625).
MINISTRAL_8B = ModelSpec.of("ministral-8b", [
    (FullAttentionSpec(kv_heads=8, head_dim=128), 9),
    (SlidingWindowSpec(kv_heads=8, head_dim=128, window=32768), 27),
])

# Llama-3.2-11B-Vision (mllama): 40 text layers, cross_attention_layers [3, 8, ..., 38] -> 8 cross + 32 self,
# num_key_value_heads 8, head_dim 128. Encoder tokens: (560/14)^2 + 1 = 1601 per tile, max_num_tiles 4 ->
# 6404.
MLLAMA_11B = ModelSpec.of("mllama-11b", [
    (FullAttentionSpec(kv_heads=8, head_dim=128), 32),
    (CrossAttentionSpec(kv_heads=8, head_dim=128, encoder_tokens=6404), 8),
])

# Qwen3-Next-80B-A3B: 48 layers, full_attention_interval 4 -> 12 gated full-attention layers
# (num_key_value_heads 2, head_dim 256) + 36 gated-delta-net layers (linear_num_key_heads 16,
# linear_key_head_dim 128, linear_num_value_heads 32, linear_value_head_dim 128, linear_conv_kernel_dim 4).
QWEN3_NEXT_80B = ModelSpec.of("qwen3-next-80b-a3b", [
    (FullAttentionSpec(kv_heads=2, head_dim=256), 12),
    (MambaSpec(name="linear", state_bytes_per_layer=gated_delta_net_state_bytes(
        num_k_heads=16, k_head_dim=128, num_v_heads=32, v_head_dim=128, conv_kernel=4)), 36),
])

# Nemotron-H-8B-Base-8K: 52 blocks, hybrid_override_pattern
# "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-" = 24 Mamba2 (M) + 4 attention (*) + 24 MLP (-).
# Attention: num_key_value_heads 8, head_dim 128. Mamba2: mamba_num_heads 128, mamba_head_dim 64,
# ssm_state_size 128, n_groups 8, conv_kernel 4 (n_groups 8 is inferred from in_proj width 18560 = 2*8192 +
# 2*8*128 + 128).
NEMOTRON_H_8B = ModelSpec.of("nemotron-h-8b", [
    (FullAttentionSpec(kv_heads=8, head_dim=128), 4),
    (MambaSpec(state_bytes_per_layer=mamba2_state_bytes(
        num_heads=128, head_dim=64, state_size=128, n_groups=8, conv_kernel=4)), 24),
])

# Llama-3.1-8B with a one-layer EAGLE-style draft (full attention, 8 kv heads, head_dim 128): draft KV is its
# own type "draft_full". Illustrative: EAGLE heads for Llama-3.1-8B are one decoder layer of the target's
# shape.
LLAMA_3_1_8B_EAGLE = LLAMA_3_1_8B.with_draft(
    ModelSpec.of("eagle", [(FullAttentionSpec(kv_heads=8, head_dim=128), 1)]))

MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    LLAMA_3_1_8B, GEMMA_3_27B, GPT_OSS_120B, LLAMA_4_SCOUT, MINISTRAL_8B, MLLAMA_11B, QWEN3_NEXT_80B,
    NEMOTRON_H_8B, LLAMA_3_1_8B_EAGLE,
)}
