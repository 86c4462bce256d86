"""The recall task the zoo's trained models answer: where is each thing, asked long after being told.

A fact names a thing (value) and a room (key): "The apple is in the red room." The question "What is in the
red room?" has one right answer, " The apple.", and the fact may sit hundreds of tokens back: several times the
tiny Gemma-3's 32-token window, where only its full-attention layer reaches. So an answer is right only if the
KV of the fact's tokens (full-attention layer) and of the question's (window) is intact.

Two text formats, exactly as the sglang frontend programs in examples/programs.py send them (sglang's plain
chat template for a model path it does not know):

    chat      SYSTEM:<document>\nUSER:What is in the red room?\nASSISTANT: The apple.\nUSER:...
    document  Read the document, then answer each question.\n\n<document>\n\nQuestion: What is in the red
              room?\nAnswer: The apple.\n

A document mixes facts with sentences of the tokenizer's corpus. Every key and value is one token.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sglang_jenga.models.corpus import CORPUS

# Rooms (keys) and things (values, singular: "The X is in ..."): each one token with its leading space in every
# zoo tokenizer.
KEYS = ("red", "blue", "white", "grey", "yellow", "orange", "dark", "bright", "north", "west", "quiet", "cold",
    "warm", "small", "large", "old", "new", "empty", "long", "short")
VALUES = ("apple", "book", "key", "bread", "cup", "clock", "shirt", "pen", "notebook", "honey", "salt", "spoon",
    "carrot", "flower", "glass", "card", "phone", "money", "shell", "leaf", "oil", "soup", "wheel", "engine", "belt",
    "brush", "seed", "bird", "cat", "dog", "owl", "box", "car", "desk", "tree")
DOC_INTRO = "Read the document, then answer each question.\n\n"
STOP = "\n"  # an answer is one line
_SENTENCES = tuple(s.strip() + "." for s in re.split(r"[.!?]\s+", " ".join(CORPUS.split())) if 30 < len(s) < 160)


def fact(value: str, key: str) -> str:
    return f"The {value} is in the {key} room."


def question(key: str) -> str:
    return f"What is in the {key} room?"


def answer(value: str) -> str:
    """The generated text of a right answer (the frontend's stop string cuts the newline after it)."""
    return f" The {value}."


def is_right(generated: str, value: str) -> bool:
    return generated.strip() == answer(value).strip()


@dataclass(frozen=True)
class Document:
    """Facts (value, key) in the order told, and the text telling them among corpus sentences."""

    facts: tuple[tuple[str, str], ...]
    text: str

    def value_of(self, key: str) -> str:
        return next(v for v, k in self.facts if k == key)


def make_document(rng: random.Random, num_facts: int, filler: tuple[int, int] = (0, 3)) -> Document:
    """`num_facts` facts with distinct keys, each after `filler` (min, max) corpus sentences."""
    keys = rng.sample(KEYS, num_facts)
    values = rng.sample(VALUES, num_facts)
    parts: list[str] = []
    for value, key in zip(values, keys, strict=True):
        parts += rng.sample(_SENTENCES, rng.randint(*filler))
        parts.append(fact(value, key))
    parts += rng.sample(_SENTENCES, rng.randint(*filler))
    return Document(tuple(zip(values, keys, strict=True)), " ".join(parts))


def chat_text(document: str, turns: Sequence[tuple[str, str]]) -> str:
    """The conversation's text after all `turns` (question key, answer value), answered rightly."""
    out = f"SYSTEM:{document}\n"
    for key, value in turns:
        out += f"USER:{question(key)}\nASSISTANT:{answer(value)}{STOP}"
    return out


def document_text(document: str, turns: Sequence[tuple[str, str]]) -> str:
    """The document-questions text after all `turns` (question key, answer value), answered rightly."""
    out = f"{DOC_INTRO}{document}\n\n"
    for key, value in turns:
        out += f"Question: {question(key)}\nAnswer:{answer(value)}{STOP}"
    return out


def document_prompt(document: str, key: str) -> str:
    """A single question about `document`, up to where the model answers."""
    return f"{DOC_INTRO}{document}\n\nQuestion: {question(key)}\nAnswer:"
