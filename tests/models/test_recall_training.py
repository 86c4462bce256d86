"""The recall task and the trained weights, below any server: text formats, the training targets, and the shipped
tiny Gemma-3 answering held-out questions in transformers (the same weights sglang loads)."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from sglang_jenga.models import MODELS, TRAINED, build
from sglang_jenga.models.recall import KEYS, VALUES, chat_text, document_prompt, is_right, make_document
from sglang_jenga.models.tokenizer import build_tokenizer
from sglang_jenga.models.train_recall import make_sample, recall_accuracy

TOKENIZER = build_tokenizer(MODELS["gemma3"].family)


@pytest.mark.parametrize("name", ["gemma3", "llama", "mellum"])
def test_keys_and_values_are_single_tokens(name: str) -> None:
    tokenizer = build_tokenizer(MODELS[name].family)
    for word in KEYS + VALUES:
        assert len(tokenizer.encode(f" {word}", add_special_tokens=False).ids) == 1, word


def test_chat_text_is_sglang_plain_template() -> None:
    doc = make_document(random.Random(0), 2, (0, 0))
    (v0, k0), _ = doc.facts
    assert doc.text.startswith(f"The {v0} is in the {k0} room.")
    assert chat_text(doc.text, [(k0, v0)]) == (
        f"SYSTEM:{doc.text}\nUSER:What is in the {k0} room?\nASSISTANT: The {v0}.\n")
    assert document_prompt(doc.text, k0).endswith(f"\n\nQuestion: What is in the {k0} room?\nAnswer:")
    assert is_right(f" The {v0}.", v0) and not is_right(f" The {v0}", v0)


def test_training_targets_point_at_the_right_tokens() -> None:
    rng = random.Random(3)
    for _ in range(20):
        s = make_sample(TOKENIZER, rng)
        tok = [TOKENIZER.id_to_token(i) for i in s.ids]
        for query, value in s.move_value:  # a fact's key looks at its value, 4 tokens before
            assert tok[query][1:] in KEYS and tok[value][1:] in VALUES and query - value == 4
        for (the, key), (the2, fact_key) in zip(s.move_key, s.lookup, strict=True):
            assert the == the2 and tok[the] == "ĠThe" and tok[key] == tok[fact_key]
            assert s.ids[the + 1] == s.ids[next(v for q, v in s.move_value if q == fact_key)]
        assert [tok[p + 1] for p in s.predict][:4] == ["ĠThe", tok[s.lookup[0][0] + 1], ".", "Ċ"]


@pytest.mark.parametrize("name", ["gemma3", "llama"])
def test_shipped_weights_recall_held_out_documents(name: str, tmp_path) -> None:  # noqa: ANN001
    assert name in TRAINED
    model = AutoModelForCausalLM.from_pretrained(build(name, tmp_path, trained=True), dtype=torch.float32)
    tokenizer = build_tokenizer(MODELS[name].family)
    rng = random.Random(12345)  # not the training seeds
    accuracy = recall_accuracy(model.eval(), [make_sample(tokenizer, rng) for _ in range(40)])
    assert accuracy >= 0.95


def test_untrained_model_has_no_weights(tmp_path) -> None:  # noqa: ANN001
    assert not (build("llama", tmp_path) / "model.safetensors").exists()
    with pytest.raises(ValueError, match="no trained weights"):
        build("falcon_h1", tmp_path, trained=True)


def test_cli_writes_trained_weights(tmp_path) -> None:  # noqa: ANN001
    from sglang_jenga.models.__main__ import main

    assert main(["gemma3", str(tmp_path / "g"), "--trained"]) == 0
    assert (tmp_path / "g" / "model.safetensors").stat().st_size > 1_000_000
