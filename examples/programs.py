"""SGLang frontend-language programs that exercise prefix sharing, used by the examples and tests.

Each program is an `sgl.function`; `run_text_programs(backend_url)` runs them against a server and
returns their outputs and which answers are right, so the same work can be put to a jenga server and a
default one. All generation is greedy so two managers must produce the same text. The questions are the
recall task's (sglang_jenga.models.recall): "What is in the red room?" about a document of facts, which
the zoo's recall-trained models answer (" The apple.") only while every cached token's KV is intact.

- `multi_turn_chat`: several conversations that share one system prompt (the document), each several
  turns long (every turn re-sends the whole conversation: prefix hits grow turn by turn).
- `document_qa`: the document, questions asked in parallel with `fork`, then `join`.
- `image_qa`: a question about an image (mllama-style cross-attention models only).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import sglang as sgl

from sglang_jenga.models.recall import DOC_INTRO, STOP, is_right, make_document, question

# One document of facts (its first facts ~300 tokens before the questions: ~10x the tiny Gemma-3's window),
# the system prompt of every conversation and the document of the fork/join program.
DOCUMENT = make_document(random.Random(2026), 8, (1, 2))
_KEYS = [key for _, key in DOCUMENT.facts]
CONVERSATIONS = [_KEYS[0:3], _KEYS[3:6], [_KEYS[6], _KEYS[0], _KEYS[7]]]  # room names, one question each
QUESTIONS = [_KEYS[1], _KEYS[4], _KEYS[7]]

GEN = {"max_tokens": 8, "temperature": 0.0, "stop": STOP}
IMAGE_GEN = {"max_tokens": 12, "temperature": 0.0}


@sgl.function
def multi_turn_chat(s: Any, turns: list[str]) -> None:
    s += sgl.system(DOCUMENT.text)
    for i, key in enumerate(turns):
        s += sgl.user(question(key))
        s += sgl.assistant(sgl.gen(f"answer_{i}", **GEN))


@sgl.function
def document_qa(s: Any, document: str, questions: list[str]) -> None:
    s += DOC_INTRO + document + "\n\n"
    forks = s.fork(len(questions))
    for f, key in zip(forks, questions, strict=True):
        f += "Question: " + question(key) + "\nAnswer:" + sgl.gen("answer", **GEN)
    forks.join()


@sgl.function
def image_qa(s: Any, image_path: str, question: str) -> None:
    s += sgl.user(sgl.image(image_path) + question)
    s += sgl.assistant(sgl.gen("answer", **IMAGE_GEN))


def run_text_programs(backend_url: str) -> dict[str, Any]:
    """Run the text programs on the server at `backend_url` (sglang's plain chat template: the format the
    recall models were trained on); returns {program: outputs, "right": [answer is right, per question]}."""
    backend = sgl.RuntimeEndpoint(backend_url, chat_template_name="default")
    chats = multi_turn_chat.run_batch([{"turns": t} for t in CONVERSATIONS], backend=backend)
    qa = document_qa.run(document=DOCUMENT.text, questions=QUESTIONS, backend=backend)
    answers = [[s[f"answer_{i}"] for i in range(len(t))] for s, t in zip(chats, CONVERSATIONS, strict=True)]
    asked = [k for t in CONVERSATIONS for k in t] + QUESTIONS
    given = [a for t in answers for a in t] + list(qa["answer"])
    right = [is_right(a, DOCUMENT.value_of(k)) for k, a in zip(asked, given, strict=True)]
    return {"multi_turn_chat": answers, "document_qa": list(qa["answer"]), "right": right}


def run_image_program(
    backend_url: str, image_path: str | Path, chat_template: str = "llama-3-instruct"
) -> dict[str, Any]:
    """Run `image_qa` on the server at `backend_url` for one image. The frontend writes the prompt
    itself, so it needs a chat template whose image token the model knows (mllama: `<|image|>`)."""
    backend = sgl.RuntimeEndpoint(backend_url, chat_template_name=chat_template)
    state = image_qa.run(image_path=str(image_path), question="What is in this picture?", backend=backend)
    return {"image_qa": state["answer"]}
