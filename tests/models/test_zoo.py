"""Tiny model zoo: files, byte-for-byte determinism, tokenizers, chat templates, config fields, HF forwards.

CPU only, no server. The zoo is built once per session into a tmp dir; HF models are built from the written
config.json with random weights, which proves the config is self-consistent for transformers 5.19.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from sglang_jenga.models import NAMES, build, build_all, describe
from sglang_jenga.models.tokenizer import VOCAB_SIZE
from sglang_jenga.models.zoo import mllama_tokens_per_image

TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
}
CAUSAL_LM_FILES = TOKENIZER_FILES | {"config.json", "generation_config.json"}
EXPECTED_FILES = {name: CAUSAL_LM_FILES for name in NAMES} | {
    "mllama": CAUSAL_LM_FILES | {"preprocessor_config.json", "processor_config.json"}
}
HF_CAUSAL_LMS = ["llama", "gemma3", "mellum", "falcon_h1", "nemotron_h", "qwen3_next"]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": [{"type": "text", "text": "Why is the sky blue?"}]},
]
LLAMA3_CHAT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhy is the sky blue?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
GEMMA_CHAT = (
    "<bos><start_of_turn>system\nBe brief.<end_of_turn>\n<start_of_turn>user\nHi!<end_of_turn>\n"
    "<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n"
    "<start_of_turn>model\n"
)
CHATML_CHAT = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
    "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nWhy is the sky blue?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
EXPECTED_CHAT = {
    "llama": LLAMA3_CHAT,
    "llama_eagle": LLAMA3_CHAT,
    "mllama": LLAMA3_CHAT,
    "gemma3": GEMMA_CHAT,
    "mellum": CHATML_CHAT,
    "falcon_h1": CHATML_CHAT,
    "nemotron_h": CHATML_CHAT,
    "qwen3_next": CHATML_CHAT,
}
ROUND_TRIP_TEXTS = ["The morning train left the station.", "héllo wörld 世界 🙂\n\tx = f(y) # 42%", ""]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    build_all(root)
    return root


def _config(zoo: Path, name: str) -> dict:
    return json.loads((zoo / name / "config.json").read_text())


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sglang_jenga.models", *args], capture_output=True, text=True, check=False
    )


def test_names_are_the_zoo() -> None:
    assert set(NAMES) == {
        "llama",
        "gemma3",
        "mellum",
        "mllama",
        "falcon_h1",
        "nemotron_h",
        "qwen3_next",
        "llama_eagle",
    }
    with pytest.raises(ValueError, match="unknown zoo model"):
        build("gpt2", "/nonexistent")


@pytest.mark.parametrize("name", NAMES)
def test_writes_exactly_the_expected_files(zoo: Path, name: str) -> None:
    assert {p.name for p in (zoo / name).iterdir()} == EXPECTED_FILES[name]


def test_cli_list_prints_every_name_with_description() -> None:
    result = _run_cli("--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(NAMES)
    assert all(describe(line.split()[0]) in line for line in lines)


def test_cli_rejects_unknown_name_and_missing_outdir() -> None:
    assert _run_cli("gpt2", "/tmp/x").returncode == 2
    assert _run_cli("llama").returncode == 2


def test_byte_identical_across_processes_and_api(zoo: Path, tmp_path: Path) -> None:
    """Two fresh interpreters (BPE retrained, Rust hash seeds differ) and the API write the same bytes."""
    for run in ("a", "b"):
        result = _run_cli("all", str(tmp_path / run))
        assert result.returncode == 0, result.stderr
    reference = _file_bytes(zoo)
    assert len(reference) == sum(len(files) for files in EXPECTED_FILES.values())
    assert _file_bytes(tmp_path / "a") == reference
    assert _file_bytes(tmp_path / "b") == reference


def test_rebuild_into_same_dir_is_idempotent(zoo: Path, tmp_path: Path) -> None:
    out = build("gemma3", tmp_path / "g")
    first = _file_bytes(out)
    build("gemma3", out)
    assert _file_bytes(out) == first == _file_bytes(zoo / "gemma3")


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_round_trips_and_matches_config_ids(zoo: Path, name: str) -> None:
    tok = AutoTokenizer.from_pretrained(zoo / name)
    config = AutoConfig.from_pretrained(zoo / name)
    text_config = config.get_text_config()
    assert text_config.vocab_size == VOCAB_SIZE
    assert len(tok) == VOCAB_SIZE + (1 if name == "mllama" else 0)
    for text in ROUND_TRIP_TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        assert max(ids, default=0) < VOCAB_SIZE
        assert tok.decode(ids) == text
    assert tok.eos_token_id == text_config.eos_token_id
    assert tok.pad_token_id == text_config.pad_token_id
    assert tok.bos_token_id == text_config.bos_token_id
    with_specials = tok.encode("Hi")
    if tok.bos_token_id is None:
        assert with_specials == tok.encode("Hi", add_special_tokens=False)
    else:
        assert with_specials[0] == tok.bos_token_id and with_specials.count(tok.bos_token_id) == 1
    for special in tok.all_special_tokens:
        assert len(tok.encode(special, add_special_tokens=False)) == 1


def test_vocab_is_trained_not_just_bytes(zoo: Path) -> None:
    tok = AutoTokenizer.from_pretrained(zoo / "llama")
    assert len(tok.encode(" the memory of the model", add_special_tokens=False)) <= 5


@pytest.mark.parametrize("name", NAMES)
def test_chat_template_renders(zoo: Path, name: str) -> None:
    tok = AutoTokenizer.from_pretrained(zoo / name)
    assert (
        tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
        == EXPECTED_CHAT[name]
    )
    ids = tok.apply_chat_template(CONVERSATION, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tok.decode(ids) == EXPECTED_CHAT[name]


def test_generation_config_stops_on_end_of_turn(zoo: Path) -> None:
    stops = {
        name: json.loads((zoo / name / "generation_config.json").read_text())["eos_token_id"]
        for name in NAMES
    }
    tok = AutoTokenizer.from_pretrained(zoo / "gemma3")
    assert tok.convert_ids_to_tokens(stops["gemma3"]) == ["<eos>", "<end_of_turn>"]
    tok = AutoTokenizer.from_pretrained(zoo / "qwen3_next")
    assert tok.convert_ids_to_tokens(stops["qwen3_next"]) == ["<|endoftext|>", "<|im_end|>"]
    assert stops["llama"] == stops["mllama"] == stops["llama_eagle"]


@pytest.mark.parametrize("name", NAMES)
def test_common_dims(zoo: Path, name: str) -> None:
    text = AutoConfig.from_pretrained(zoo / name).get_text_config()
    assert text.max_position_embeddings >= 4096
    assert (text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (128, 2, 1)
    assert getattr(text, "head_dim", text.hidden_size // text.num_attention_heads) == 64
    assert 1 <= text.num_hidden_layers <= 8


def test_gemma3_is_five_sliding_to_one_full(zoo: Path) -> None:
    config = AutoConfig.from_pretrained(zoo / "gemma3")
    assert config.model_type == "gemma3_text"
    assert config.layer_types == ["sliding_attention"] * 5 + ["full_attention"]
    assert config.sliding_window == 32
    assert set(config.rope_parameters) == {"sliding_attention", "full_attention"}


def test_mellum_is_three_sliding_to_one_full(zoo: Path) -> None:
    config = AutoConfig.from_pretrained(zoo / "mellum")
    assert config.layer_types == ["sliding_attention"] * 3 + ["full_attention"]
    assert config.mlp_layer_types == ["dense"] * 4
    assert config.sliding_window == 32
    assert set(config.rope_parameters) == {"sliding_attention", "full_attention"}


def test_mamba2_dims_are_consistent(zoo: Path) -> None:
    falcon = AutoConfig.from_pretrained(zoo / "falcon_h1")
    assert falcon.mamba_n_heads * falcon.mamba_d_head == falcon.mamba_d_ssm == 256
    assert (falcon.mamba_d_state, falcon.mamba_d_conv, falcon.mamba_chunk_size) == (32, 4, 32)
    assert falcon.num_hidden_layers == 4
    nemotron = AutoConfig.from_pretrained(zoo / "nemotron_h")
    assert nemotron.hybrid_override_pattern == "M-M*-M*-"
    assert nemotron.mamba_num_heads * nemotron.mamba_head_dim == 256
    assert nemotron.mamba_num_heads % nemotron.n_groups == 0
    assert (nemotron.ssm_state_size, nemotron.conv_kernel, nemotron.chunk_size) == (32, 4, 32)
    raw = _config(zoo, "nemotron_h")
    assert raw["n_groups"] == raw["mamba_n_groups"]  # transformers and sglang names for the same field


def test_qwen3_next_is_three_linear_to_one_full(zoo: Path) -> None:
    config = AutoConfig.from_pretrained(zoo / "qwen3_next")
    assert config.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    assert _config(zoo, "qwen3_next")["full_attention_interval"] == 4
    assert config.linear_num_value_heads % config.linear_num_key_heads == 0
    assert (config.num_experts, config.num_experts_per_tok) == (4, 2)


def test_mllama_layout(zoo: Path) -> None:
    config = AutoConfig.from_pretrained(zoo / "mllama")
    text, vision = config.text_config, config.vision_config
    assert text.cross_attention_layers == [2, 5] and text.num_hidden_layers == 6
    assert config.image_token_index == text.vocab_size == VOCAB_SIZE
    assert vision.vision_output_dim == vision.hidden_size * (len(vision.intermediate_layers_indices) + 1)
    # sglang's vision encoder appends the final output when index num_hidden_layers - 1 is listed (HF does
    # not), which breaks the projector's input width: keep the last layer out.
    assert max(vision.intermediate_layers_indices) < vision.num_hidden_layers - 1
    assert (
        vision.max_num_tiles * ((vision.image_size // vision.patch_size) ** 2 + 1)
        == mllama_tokens_per_image()
    )
    assert mllama_tokens_per_image() == 68


def test_eagle_draft_matches_llama(zoo: Path) -> None:
    for file_name in TOKENIZER_FILES:
        assert (zoo / "llama_eagle" / file_name).read_bytes() == (zoo / "llama" / file_name).read_bytes()
    draft, target = _config(zoo, "llama_eagle"), _config(zoo, "llama")
    assert draft["architectures"] == ["LlamaForCausalLMEagle3"] and draft["num_hidden_layers"] == 1
    assert draft["vocab_size"] == draft["draft_vocab_size"] == target["vocab_size"]
    assert draft["target_hidden_size"] == target["hidden_size"]
    layer_ids = draft["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    assert len(set(layer_ids)) == len(layer_ids) == 3 and max(layer_ids) < target["num_hidden_layers"]
    assert AutoConfig.from_pretrained(zoo / "llama_eagle").model_type == "llama"


@pytest.mark.parametrize("name", HF_CAUSAL_LMS)
def test_hf_forward_on_cpu(zoo: Path, name: str) -> None:
    config = AutoConfig.from_pretrained(zoo / name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    assert type(model).__name__ == config.architectures[0]
    tok = AutoTokenizer.from_pretrained(zoo / name)
    inputs = tok.apply_chat_template(
        CONVERSATION, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], VOCAB_SIZE)
    assert torch.isfinite(logits).all()


def test_mllama_processor_and_forward_with_image(zoo: Path) -> None:
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(zoo / "mllama")
    assert (processor.image_token, processor.image_token_id) == ("<|image|>", VOCAB_SIZE)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert "<|end_header_id|>\n\n<|image|>What is this?<|eot_id|>" in prompt
    image = Image.new("RGB", (120, 90), (200, 30, 90))
    inputs = processor(images=image, text=prompt, add_special_tokens=False, return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 1, 4, 3, 56, 56)
    assert (inputs["input_ids"] == VOCAB_SIZE).sum() == 1
    config = AutoConfig.from_pretrained(zoo / "mllama")
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    assert type(model).__name__ == "MllamaForConditionalGeneration"
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], VOCAB_SIZE)
    assert torch.isfinite(logits).all()


_SGLANG_PROBE = """
import json, sys
from sglang.srt.configs.model_config import ModelConfig
from sglang.srt.runtime_context import get_parallel
get_parallel().override_permanently(attn_tp_size=1, enable_cp_tp_group_sharing=False)
facts = {}
for name, path in json.loads(sys.argv[1]).items():
    kwargs = {"is_draft_model": True, "speculative_algorithm": "EAGLE3"} if name == "llama_eagle" else {}
    mc = ModelConfig(path, **kwargs)
    text = mc.hf_text_config
    hybrid = name in ("falcon_h1", "nemotron_h", "qwen3_next")
    mamba = text.mamba2_cache_params if hybrid else None
    facts[name] = {
        "config_class": type(mc.hf_config).__name__,
        "vocab_size": mc.vocab_size,
        "context_len": mc.context_len,
        "num_hidden_layers": mc.num_hidden_layers,
        "head_dim": mc.head_dim,
        "kv_heads": mc.get_total_num_kv_heads(),
        "is_hybrid_swa": bool(mc.is_hybrid_swa),
        "swa_layers": list(getattr(mc, "swa_attention_layer_ids", None) or []),
        "full_layers": list(getattr(mc, "full_attention_layer_ids", None) or []),
        "mamba_layers": list(mamba.layers) if mamba else [],
        "mamba_temporal": list(mamba.shape.temporal) if mamba else [],
        "eos": sorted(mc.hf_eos_token_id or []),
    }
print(json.dumps(facts))
"""


def test_sglang_reads_the_configs(zoo: Path) -> None:
    """sglang's own ModelConfig (its config classes for falcon_h1/nemotron_h/qwen3_next) in a fresh process.

    Fails if sglang cannot be imported (the set-up installs it with the CPU runtime hook). ~15 s: sglang's import.
    """
    paths = json.dumps({name: str(zoo / name) for name in NAMES})
    result = subprocess.run(
        [sys.executable, "-c", _SGLANG_PROBE, paths], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert {f["vocab_size"] for f in facts.values()} == {VOCAB_SIZE}
    assert all(
        f["context_len"] >= 4096 and f["head_dim"] == 64 and f["kv_heads"] == 1 for f in facts.values()
    )
    assert facts["nemotron_h"]["config_class"] == "NemotronHConfig"
    assert (
        facts["mellum"]["is_hybrid_swa"],
        facts["mellum"]["swa_layers"],
        facts["mellum"]["full_layers"],
    ) == (True, [0, 1, 2], [3])
    assert not facts["gemma3"]["is_hybrid_swa"]  # sglang 0.5.23 disables hybrid SWA memory for Gemma 3
    assert facts["falcon_h1"]["mamba_layers"] == [0, 1, 2, 3]
    assert facts["nemotron_h"]["mamba_layers"] == [0, 2, 5]
    assert facts["qwen3_next"]["mamba_layers"] == [0, 1, 2]
    assert facts["falcon_h1"]["mamba_temporal"] == facts["nemotron_h"]["mamba_temporal"] == [4, 64, 32]
    assert facts["qwen3_next"]["mamba_temporal"] == [4, 32, 32]
    assert facts["llama_eagle"]["num_hidden_layers"] == 1
    assert facts["gemma3"]["eos"] == [1, 4] and facts["qwen3_next"]["eos"] == [0, 2]
