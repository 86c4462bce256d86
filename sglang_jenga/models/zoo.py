"""The tiny model zoo: one config per architecture whose KV/state layout Jenga must handle.

No weights are ever written: servers run with `--load-format dummy`. Every attention layer uses head_dim 64
with 2 query heads and 1 KV head on hidden size 128 (so one token of one full-attention layer in bf16 is
2 (K,V) x 1 head x 64 x 2 bytes = 256 bytes); vocab is the family tokenizer's 2048. Config dicts are written
as-is (sorted keys), in the field names both transformers 5.19 and sglang 0.5.23 read; see REFERENCE.md.

    name         architecture                      layers (S=sliding, F=full, X=cross, M=mamba, L=linear)
    llama        LlamaForCausalLM                  F F F F
    gemma3       Gemma3ForCausalLM                 S S S S S F          window 32
    mellum       MellumForCausalLM                 S S S F              window 32 (sglang SWAKVPool path)
    mllama       MllamaForConditionalGeneration    F F X F F X          68 vision tokens per image
    falcon_h1    FalconH1ForCausalLM               (F+M) x 4            attention and Mamba2 in every layer
    nemotron_h   NemotronHForCausalLM              M - M F - M F -      (- = MLP only, no cache)
    qwen3_next   Qwen3NextForCausalLM              L L L F              gated delta net + full, tiny MoE
    llama_eagle  LlamaForCausalLMEagle3            F                    EAGLE-3 draft for `llama`
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sglang_jenga.models.tokenizer import CHATML, GEMMA, LLAMA3, LLAMA3_VISION, VOCAB_SIZE, TokenizerFamily

HIDDEN = 128
HEADS = 2
KV_HEADS = 1
HEAD_DIM = 64
INTERMEDIATE = 256
MAX_POSITIONS = 8192
SLIDING_WINDOW = 32
DTYPE = "bfloat16"

Json = dict[str, object]


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: `files(family)` returns {file name: JSON object} besides the tokenizer files."""

    name: str
    description: str
    family: TokenizerFamily
    files: Callable[[TokenizerFamily], dict[str, Json]]


def _ids(family: TokenizerFamily) -> Json:
    """bos/eos/pad ids for config.json (eos: the family's end-of-turn token)."""
    bos = None if family.bos is None else family.token_id(family.bos)
    return {
        "bos_token_id": bos,
        "eos_token_id": family.token_id(family.eos),
        "pad_token_id": family.token_id(family.pad),
    }


def _generation_config(family: TokenizerFamily) -> Json:
    ids = _ids(family)
    ids["eos_token_id"] = [family.token_id(t) for t in family.stop]
    return ids


def _attention() -> Json:
    return {
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "max_position_embeddings": MAX_POSITIONS,
        "vocab_size": VOCAB_SIZE,
        "dtype": DTYPE,
    }


def _causal_lm(family: TokenizerFamily, config: Json) -> dict[str, Json]:
    return {"config.json": config | _ids(family), "generation_config.json": _generation_config(family)}


def _llama_config() -> Json:
    return _attention() | {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 4,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
    }


def _llama(family: TokenizerFamily) -> dict[str, Json]:
    return _causal_lm(family, _llama_config())


def _llama_eagle(family: TokenizerFamily) -> dict[str, Json]:
    """EAGLE-3 draft: one decoder layer fed by 3 captured hidden states of `llama` (outputs of layers 0-2).

    sglang's default capture list for a 4-layer target is [2, 2, 1] (duplicates), hence the explicit ids.
    """
    config = _llama_config() | {
        "architectures": ["LlamaForCausalLMEagle3"],
        "num_hidden_layers": 1,
        "target_hidden_size": HIDDEN,
        "draft_vocab_size": VOCAB_SIZE,
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": [0, 1, 2], "use_aux_hidden_state": True},
    }
    return _causal_lm(family, config)


def _sliding_rope() -> Json:
    return {
        "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    }


def _gemma3(family: TokenizerFamily) -> dict[str, Json]:
    layer_types = ["sliding_attention"] * 5 + ["full_attention"]
    config = _attention() | {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "num_hidden_layers": len(layer_types),
        "layer_types": layer_types,
        "sliding_window": SLIDING_WINDOW,
        "sliding_window_pattern": 6,
        "intermediate_size": INTERMEDIATE,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "query_pre_attn_scalar": HEAD_DIM,
        "rope_parameters": _sliding_rope(),
        "final_logit_softcapping": None,
        "attn_logit_softcapping": None,
        "tie_word_embeddings": True,
        "attention_bias": False,
    }
    return _causal_lm(family, config)


def _mellum(family: TokenizerFamily) -> dict[str, Json]:
    """Dense MLP in every layer (no MoE kernels needed on CPU); the expert fields are valid but unused."""
    layer_types = ["sliding_attention"] * 3 + ["full_attention"]
    config = _attention() | {
        "architectures": ["MellumForCausalLM"],
        "model_type": "mellum",
        "num_hidden_layers": len(layer_types),
        "layer_types": layer_types,
        "mlp_layer_types": ["dense"] * len(layer_types),
        "sliding_window": SLIDING_WINDOW,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_parameters": _sliding_rope(),
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 64,
        "norm_topk_prob": True,
        "tie_word_embeddings": False,
        "attention_bias": False,
    }
    return _causal_lm(family, config)


# mllama vision tower: 56x56 tiles of 14x14 patches -> 16 patches + 1 class token = 17 tokens per tile;
# 4 tiles per image -> 68 cross-attention tokens per image in sglang (HF pads each tile to 24: 96).
MLLAMA_IMAGE_SIZE = 56
MLLAMA_PATCH_SIZE = 14
MLLAMA_MAX_TILES = 4
MLLAMA_VISION_HIDDEN = 64
MLLAMA_VISION_LAYERS = 3
# Inputs of vision layers 0 and 1 are concatenated to the output: 64 x (1 + 2) = 192 features. The last
# layer's index must stay out of this list: sglang then also appends the final output (HF does not).
MLLAMA_INTERMEDIATE_LAYERS = [0, 1]


def mllama_tokens_per_image() -> int:
    """Encoder (cross-attention) tokens sglang stores per image: tiles x (patches + class token)."""
    return MLLAMA_MAX_TILES * ((MLLAMA_IMAGE_SIZE // MLLAMA_PATCH_SIZE) ** 2 + 1)


def _mllama(family: TokenizerFamily) -> dict[str, Json]:
    """Llama 3.2 Vision layout: the image token id is the text vocab size (outside the LM head)."""
    ids = _ids(family)
    text = {
        **_attention(),
        **ids,
        "model_type": "mllama_text_model",
        "num_hidden_layers": 6,
        "cross_attention_layers": [2, 5],
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        "tie_word_embeddings": False,
    }
    del text["head_dim"]  # mllama derives it: hidden_size / num_attention_heads = 64
    vision = {
        "model_type": "mllama_vision_model",
        "hidden_size": MLLAMA_VISION_HIDDEN,
        "attention_heads": 2,
        "num_hidden_layers": MLLAMA_VISION_LAYERS,
        "num_global_layers": 1,
        "intermediate_size": 2 * MLLAMA_VISION_HIDDEN,
        "intermediate_layers_indices": MLLAMA_INTERMEDIATE_LAYERS,
        "vision_output_dim": MLLAMA_VISION_HIDDEN * (len(MLLAMA_INTERMEDIATE_LAYERS) + 1),
        "image_size": MLLAMA_IMAGE_SIZE,
        "patch_size": MLLAMA_PATCH_SIZE,
        "max_num_tiles": MLLAMA_MAX_TILES,
        "num_channels": 3,
        "norm_eps": 1e-5,
        "hidden_act": "gelu",
        "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
    }
    config = {
        "architectures": ["MllamaForConditionalGeneration"],
        "model_type": "mllama",
        "image_token_index": family.token_id("<|image|>"),
        "text_config": text,
        "vision_config": vision,
        "dtype": DTYPE,
    }
    image_processor = {
        "image_processor_type": "MllamaImageProcessor",
        "processor_class": "MllamaProcessor",
        "size": {"height": MLLAMA_IMAGE_SIZE, "width": MLLAMA_IMAGE_SIZE},
        "max_image_tiles": MLLAMA_MAX_TILES,
        "do_convert_rgb": True,
        "do_resize": True,
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_pad": True,
    }
    return {
        "config.json": config,
        "generation_config.json": _generation_config(family),
        "preprocessor_config.json": image_processor,
        "processor_config.json": {"processor_class": "MllamaProcessor"},
    }


# Mamba2 mixer dims shared by falcon_h1 and nemotron_h: 4 heads x 64 = 256 inner channels, state 32.
MAMBA_HEADS = 4
MAMBA_HEAD_DIM = 64
MAMBA_STATE = 32
MAMBA_CONV = 4
MAMBA_CHUNK = 32


def _falcon_h1(family: TokenizerFamily) -> dict[str, Json]:
    """Every layer runs attention and a Mamba2 mixer side by side (both caches per layer)."""
    config = _attention() | {
        "architectures": ["FalconH1ForCausalLM"],
        "model_type": "falcon_h1",
        "num_hidden_layers": 4,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
        "mamba_d_ssm": MAMBA_HEADS * MAMBA_HEAD_DIM,
        "mamba_n_heads": MAMBA_HEADS,
        "mamba_d_head": MAMBA_HEAD_DIM,
        "mamba_n_groups": 1,
        "mamba_d_state": MAMBA_STATE,
        "mamba_d_conv": MAMBA_CONV,
        "mamba_expand": 2,
        "mamba_chunk_size": MAMBA_CHUNK,
        "mamba_conv_bias": True,
        "mamba_proj_bias": False,
        "mamba_norm_before_gate": True,
        "mamba_rms_norm": False,
        "projectors_bias": False,
        "tie_word_embeddings": False,
    }
    return _causal_lm(family, config)


def _nemotron_h(family: TokenizerFamily) -> dict[str, Json]:
    """Layer pattern as a string (M mamba, - MLP, * attention): the one format both config classes parse.

    transformers calls the mamba group count `n_groups`, sglang `mamba_n_groups`: both are written.
    """
    config = _attention() | {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "hybrid_override_pattern": "M-M*-M*-",
        "intermediate_size": INTERMEDIATE,
        "mlp_hidden_act": "relu2",
        "layer_norm_epsilon": 1e-5,
        "mamba_num_heads": MAMBA_HEADS,
        "mamba_head_dim": MAMBA_HEAD_DIM,
        "ssm_state_size": MAMBA_STATE,
        "n_groups": 2,
        "mamba_n_groups": 2,
        "mamba_d_conv": MAMBA_CONV,
        "mamba_expand": 2,
        "mamba_chunk_size": MAMBA_CHUNK,
        "mamba_hidden_act": "silu",
        "mamba_conv_bias": True,
        "mamba_proj_bias": False,
        "residual_in_fp32": False,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "use_bias": False,
    }
    return _causal_lm(family, config)


def _qwen3_next(family: TokenizerFamily) -> dict[str, Json]:
    """3 gated-delta-net layers then 1 full-attention layer; a 4-expert top-2 MoE with a shared expert."""
    layer_types = ["linear_attention"] * 3 + ["full_attention"]
    config = _attention() | {
        "architectures": ["Qwen3NextForCausalLM"],
        "model_type": "qwen3_next",
        "num_hidden_layers": len(layer_types),
        "layer_types": layer_types,
        "full_attention_interval": 4,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000000.0,
        "partial_rotary_factor": 0.25,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 32,
        "linear_value_head_dim": 32,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 64,
        "shared_expert_intermediate_size": 64,
        "norm_topk_prob": True,
        "tie_word_embeddings": False,
        "attention_bias": False,
    }
    return _causal_lm(family, config)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("llama", "LlamaForCausalLM, 4 full-attention layers", LLAMA3, _llama),
        ModelSpec("gemma3", "Gemma3ForCausalLM, 6 layers: 5 sliding (window 32) : 1 full", GEMMA, _gemma3),
        ModelSpec(
            "mellum",
            "MellumForCausalLM, 4 layers: 3 sliding (window 32) : 1 full, SWAKVPool",
            CHATML,
            _mellum,
        ),
        ModelSpec(
            "mllama",
            "MllamaForConditionalGeneration, 6 text layers (2 cross-attention), 68 vision tokens per image",
            LLAMA3_VISION,
            _mllama,
        ),
        ModelSpec(
            "falcon_h1", "FalconH1ForCausalLM, 4 layers of parallel attention + Mamba2", CHATML, _falcon_h1
        ),
        ModelSpec(
            "nemotron_h",
            "NemotronHForCausalLM, 8 layers M-M*-M*-: 3 Mamba2, 2 attention, 3 MLP",
            CHATML,
            _nemotron_h,
        ),
        ModelSpec(
            "qwen3_next",
            "Qwen3NextForCausalLM, 4 layers: 3 gated delta net : 1 full, 4-expert MoE",
            CHATML,
            _qwen3_next,
        ),
        ModelSpec(
            "llama_eagle", "LlamaForCausalLMEagle3, 1-layer EAGLE-3 draft for `llama`", LLAMA3, _llama_eagle
        ),
    )
}
