"""Benchmark model shapes and how sglang 0.5.23 would lay each one out.

`SHAPES` = the core's `shapes.MODELS` (minus the EAGLE draft pairing, which needs speculative decoding to mean
anything) plus Gemma-2-9B, used only for the paper's motivation figure:

  Gemma-2-9B (google/gemma-2-9b config.json): num_hidden_layers 42, num_key_value_heads 8, head_dim 256,
  sliding_window 4096, max_position_embeddings 8192; layers alternate local (sliding) and global attention ->
  21 full + 21 sliding. K+V per token per layer 2*8*256*2 = 8,192 B.

sglang's treatment (`sglang_layout`), checked against the installed 0.5.23 wheel:
  * SWA hybrids (gpt-oss, Ministral): `SWAKVPool` + `SWATokenToKVPoolAllocator`, SWA tokens = full tokens x
    `--swa-full-tokens-ratio` (0.8), `UnifiedRadixCache(FULL, SWA)` (configs/model_config.py is_hybrid_swa_model,
    model_executor/pool_configurator.py HybridSWAPoolConfigurator).
  * Llama-4 chunked attention: Llama4ForConditionalGeneration is in sglang's hybrid-SWA list; layers with
    (i+1) % 4 != 0 go to the SWA pool (get_hybrid_layer_ids) and the window is attention_chunk_size 8192
    (load_model_utils.resolve_sliding_window_size): the chunked layers keep the last 8192 tokens.
  * Gemma-2/3 (and Gemma-3n, EXAONE, OLMo2): arg_groups/model_overrides/gemma2_gemma3.py sets
    disable_hybrid_swa_memory ("not yet supported"): one `MHATokenToKVPool` row per token for every layer.
  * mllama: an encoder-decoder model (is_encoder_decoder_model); the image's encoder tokens are the first
    tokens of the request's row in the one token pool (ScheduleBatch.prepare_encoder_info_extend), so every
    layer, self- and cross-attention, holds a row for every encoder and text token.
  * Mamba hybrids (Qwen3-Next, Nemotron-H): `HybridReqToTokenPool` + `MambaPool` with
    max_mamba_cache_size = (budget * r/(1+r) - slot) // slot slots, r = `--mamba-full-memory-ratio` (0.9),
    the rest for the full-attention tokens (kv_cache_configurator._handle_max_mamba_cache), and
    max_running_requests = slots // 3 (MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO, no_buffer strategy).
"""

from __future__ import annotations

from typing import NamedTuple

from sglang_jenga.core import (
    ChunkedLocalSpec,
    CrossAttentionSpec,
    FullAttentionSpec,
    MambaSpec,
    ModelSpec,
    SlidingWindowSpec,
)
from sglang_jenga.core.shapes import MODELS

GEMMA_2_9B = ModelSpec.of("gemma-2-9b", [
    (FullAttentionSpec(kv_heads=8, head_dim=256), 21),
    (SlidingWindowSpec(kv_heads=8, head_dim=256, window=4096), 21),
])

SHAPES: dict[str, ModelSpec] = {
    **{k: v for k, v in MODELS.items() if not any(g.spec.draft for g in v.groups)},
    GEMMA_2_9B.name: GEMMA_2_9B,
}

# Longest context each model serves (max_position_embeddings / documented context), in tokens.
CONTEXT: dict[str, int] = {
    "llama-3.1-8b": 131_072, "gemma-3-27b": 131_072, "gpt-oss-120b": 131_072, "llama-4-scout": 262_144,
    "ministral-8b": 131_072, "mllama-11b": 131_072, "qwen3-next-80b-a3b": 262_144, "nemotron-h-8b": 8_192,
    "gemma-2-9b": 8_192,
}

# Architectures whose hybrid SWA memory sglang 0.5.23 disables (all layers keep full-length KV).
SWA_MEMORY_DISABLED = ("gemma-2", "gemma-3", "gemma-3n", "exaone", "olmo2")


class SglangLayout(NamedTuple):
    """How sglang sizes and pools a model. `kind`: "full" (one MHA pool row per token for every attention
    layer), "swa" (separate full and SWA pools), "mamba" (full pool + Mamba slots). Byte sizes per token
    (`full_token_bytes`: every layer in the full pool; `swa_token_bytes`: every layer in the SWA pool),
    `state_bytes` per Mamba slot, `window`: sglang's sliding_window_size."""

    kind: str
    full_token_bytes: int
    swa_token_bytes: int
    state_bytes: int
    window: int | None
    encoder_in_pool: bool


def token_bytes(model: ModelSpec, spec_types: tuple[type, ...]) -> int:
    """K+V bytes per token of every layer whose spec is one of `spec_types`."""
    return sum(g.spec.token_bytes(g.num_layers) for g in model.groups if isinstance(g.spec, spec_types))


def state_bytes(model: ModelSpec) -> int:
    """One request's recurrent state over all Mamba-like layers (sglang's mamba_cache_per_req)."""
    return sum(g.spec.page_bytes(1, g.num_layers) for g in model.groups if isinstance(g.spec, MambaSpec))


def attention_bytes(model: ModelSpec) -> int:
    """Bytes per token if every attention-like layer (full, window, chunked, cross) were full attention."""
    return token_bytes(model, (FullAttentionSpec, SlidingWindowSpec, ChunkedLocalSpec, CrossAttentionSpec))


def sglang_layout(model: ModelSpec, *, force_hybrid_swa: bool = False) -> SglangLayout:
    """sglang 0.5.23's pool layout for `model` (module docstring). `force_hybrid_swa` lays Gemma-2/3 out as
    the SWA hybrid sglang would build if their hybrid SWA memory were enabled (used by `sglang-tuned`)."""
    windowed = [g.spec for g in model.groups if isinstance(g.spec, SlidingWindowSpec | ChunkedLocalSpec)]
    has_cross = any(isinstance(g.spec, CrossAttentionSpec) for g in model.groups)
    state = state_bytes(model)
    if state:
        return SglangLayout("mamba", attention_bytes(model), 0, state, None, has_cross)
    disabled = model.name.startswith(SWA_MEMORY_DISABLED) and not force_hybrid_swa
    if windowed and not disabled:
        spec = windowed[0]
        window = spec.window if isinstance(spec, SlidingWindowSpec) else spec.chunk
        swa = token_bytes(model, (SlidingWindowSpec, ChunkedLocalSpec))
        return SglangLayout("swa", attention_bytes(model) - swa, swa, 0, window, has_cross)
    return SglangLayout("full", attention_bytes(model), 0, 0, None, has_cross)


def readable_bytes(model: ModelSpec, text_tokens: int, image_tokens: int) -> int:
    """Bytes the next decode step of a request with `text_tokens` tokens in its KV (and `image_tokens` encoder
    tokens) can read, per layer type: full attention every token, a sliding window the last `window` tokens
    (the core's convention: a token reads the `window` tokens before it), chunked attention the tokens of the
    current chunk (text_tokens % chunk), cross-attention the encoder tokens, Mamba one unpadded state.

    Ministral-8B at 131,072 tokens: 9*4096*131072 + 27*4096*32768 = 8,455,716,864 B of the 19,327,352,832 B a
    uniform pool holds (56.25% unreadable)."""
    total = 0
    for g in model.groups:
        spec, tb = g.spec, g.spec.token_bytes(g.num_layers)
        if isinstance(spec, SlidingWindowSpec):
            total += min(text_tokens, spec.window) * tb
        elif isinstance(spec, ChunkedLocalSpec):
            total += (text_tokens % spec.chunk) * tb
        elif isinstance(spec, CrossAttentionSpec):
            total += image_tokens * tb
        elif isinstance(spec, MambaSpec):
            total += spec.page_bytes(1, g.num_layers)
        else:
            total += text_tokens * tb
    return total
