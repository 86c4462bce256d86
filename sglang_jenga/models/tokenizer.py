"""Byte-level BPE tokenizers trained on the embedded corpus, one per chat-format family.

A family fixes the special tokens (ids 0..k-1, in the order listed), which of them are bos/eos/pad, whether
encoding prepends bos, and the chat template. Training is deterministic (same corpus + same family -> same
tokenizer.json, byte for byte, across processes), and byte-level pre-tokenization means any Unicode text
encodes. Example: family `llama3` has 8 specials, so BPE learns 2048 - 8 = 2040 byte/merge tokens and the
vocabulary is exactly 2048; `extra_tokens` (mllama's `<|image|>`) are appended after that, at id 2048.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from sglang_jenga.models.corpus import CORPUS

VOCAB_SIZE = 2048  # trained vocabulary incl. a family's specials; extra_tokens come on top


def _content_macro(image_token: str | None) -> str:
    """Jinja macro rendering a message's content: a string, or OpenAI-style parts (text, and images)."""
    image = f"{{%- elif part['type'] == 'image' %}}{{{{- '{image_token}' }}}}" if image_token else ""
    return (
        "{%- macro render(content) %}"
        "{%- if content is string %}{{- content | trim }}"
        "{%- else %}{%- for part in content %}"
        "{%- if part['type'] == 'text' %}{{- part['text'] | trim }}"
        f"{image}"
        "{%- endif %}{%- endfor %}{%- endif %}"
        "{%- endmacro %}\n"
    )


def _llama3_template(image_token: str | None = None) -> str:
    return _content_macro(image_token) + (
        "{{- bos_token }}\n"
        "{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
        "{{- render(message['content']) }}{{- '<|eot_id|>' }}"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{%- endif %}\n"
    )


def _gemma_template() -> str:
    return _content_macro(None) + (
        "{{- bos_token }}\n"
        "{%- for message in messages %}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{- '<start_of_turn>' + role + '\\n' }}{{- render(message['content']) }}{{- '<end_of_turn>\\n' }}"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}\n"
    )


def _chatml_template() -> str:
    return _content_macro(None) + (
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' }}{{- render(message['content']) }}"
        "{{- '<|im_end|>\\n' }}"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"
    )


@dataclass(frozen=True)
class TokenizerFamily:
    """Special tokens and chat format shared by the models of one family.

    `specials` take ids 0..len-1; `extra_tokens` are added after training, at ids VOCAB_SIZE.. (outside the
    text model's vocab_size, as mllama's image token is). `eos` is the tokenizer's eos; `stop` lists every id
    that ends a turn (for generation_config.json).
    """

    name: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    stop: tuple[str, ...]
    chat_template: str
    extra_tokens: tuple[tuple[str, str], ...] = ()  # (tokenizer attribute, token), e.g. ("image_token", ...)

    def token_id(self, token: str) -> int:
        """Id of a special or extra token (pure arithmetic, no tokenizer needed)."""
        if token in self.specials:
            return self.specials.index(token)
        return VOCAB_SIZE + [tok for _, tok in self.extra_tokens].index(token)

    @property
    def size(self) -> int:
        """Number of ids the tokenizer knows (len(tokenizer))."""
        return VOCAB_SIZE + len(self.extra_tokens)


_LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
)

LLAMA3 = TokenizerFamily(
    name="llama3",
    specials=_LLAMA3_SPECIALS,
    bos="<|begin_of_text|>",
    eos="<|eot_id|>",
    pad="<|finetune_right_pad_id|>",
    stop=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
    chat_template=_llama3_template(),
)

LLAMA3_VISION = TokenizerFamily(
    name="llama3_vision",
    specials=_LLAMA3_SPECIALS,
    bos="<|begin_of_text|>",
    eos="<|eot_id|>",
    pad="<|finetune_right_pad_id|>",
    stop=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
    chat_template=_llama3_template("<|image|>"),
    extra_tokens=(("image_token", "<|image|>"),),
)

GEMMA = TokenizerFamily(
    name="gemma",
    specials=("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
    bos="<bos>",
    eos="<eos>",
    pad="<pad>",
    stop=("<eos>", "<end_of_turn>"),
    chat_template=_gemma_template(),
)

CHATML = TokenizerFamily(
    name="chatml",
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
    stop=("<|endoftext|>", "<|im_end|>"),
    chat_template=_chatml_template(),
)


@functools.cache
def _trained_json(specials: tuple[str, ...]) -> str:
    """Train byte-level BPE on CORPUS with `specials` at ids 0..; returns tokenizer.json text. ~50 ms."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(  # type: ignore[no-untyped-call]  # tokenizers ships no annotation
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS.split("\n\n"), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"corpus too small: BPE stopped at {tok.get_vocab_size()} < {VOCAB_SIZE} tokens")
    return tok.to_str()


def build_tokenizer(family: TokenizerFamily) -> Tokenizer:
    """A fresh `tokenizers.Tokenizer` for `family` (training is cached per special-token set)."""
    tok = Tokenizer.from_str(_trained_json(family.specials))
    tok.add_special_tokens([token for _, token in family.extra_tokens])
    byte_level = processors.ByteLevel(trim_offsets=False)
    if family.bos is None:
        tok.post_processor = byte_level
    else:
        bos = (family.bos, family.token_id(family.bos))
        prepend = processors.TemplateProcessing(
            single=f"{family.bos}:0 $A:0",
            pair=f"{family.bos}:0 $A:0 {family.bos}:1 $B:1",
            special_tokens=[bos],
        )
        tok.post_processor = processors.Sequence([byte_level, prepend])
    return tok


def _dump(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def tokenizer_config(family: TokenizerFamily, max_length: int) -> dict[str, object]:
    """tokenizer_config.json contents: generic fast tokenizer (so transformers keeps our tokenizer.json)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": family.bos,
        "eos_token": family.eos,
        "pad_token": family.pad,
        "unk_token": None,
        "add_bos_token": family.bos is not None,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "model_input_names": ["input_ids", "attention_mask"],
        "extra_special_tokens": dict(family.extra_tokens),
    }


def write_tokenizer(family: TokenizerFamily, outdir: Path, max_length: int) -> list[Path]:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja."""
    tok_json = json.loads(build_tokenizer(family).to_str())
    specials = {k: v for k, v in (("bos_token", family.bos), ("eos_token", family.eos)) if v is not None}
    specials["pad_token"] = family.pad
    template = outdir / "chat_template.jinja"
    template.write_text(family.chat_template, encoding="utf-8")
    return [
        _dump(outdir / "tokenizer.json", tok_json),
        _dump(outdir / "tokenizer_config.json", tokenizer_config(family, max_length)),
        _dump(outdir / "special_tokens_map.json", specials),
        template,
    ]
