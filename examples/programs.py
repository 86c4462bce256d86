"""SGLang frontend-language programs that exercise prefix sharing, used by the examples and tests.

Each program is an `sgl.function`; `run_all(backend_url)` runs them against a server and returns
their outputs, so the same work can be put to a jenga server and a default one. All generation
is greedy so two managers must produce the same text.

- `multi_turn_chat`: several conversations that share one long system prompt, each several turns
  long (every turn re-sends the whole conversation: prefix hits grow turn by turn).
- `document_qa`: one shared document, questions asked in parallel with `fork`, then `join`.
- `image_qa`: a question about an image (mllama-style cross-attention models only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sglang as sgl

SYSTEM_PROMPT = (
    "You are a careful assistant for a small library. The library opens at nine in the morning "
    "and closes at six in the evening. Members may borrow five books at a time for three weeks. "
    "Late returns cost ten cents a day. The reading room is quiet; the cafe is on the ground floor. "
    "Answer briefly and politely, and say when you do not know."
)

DOCUMENT = (
    "The river town grew around a wooden bridge built in the year the mill opened. Farmers brought "
    "grain over the bridge every autumn, and the miller paid them in coins and flour. When the "
    "railway arrived, the bridge was rebuilt in stone, the mill gained a steam engine, and the town "
    "doubled in size within ten years. A flood later destroyed the old mill, but the stone bridge "
    "stood, and today it carries a road, a footpath and a line of lamps that are lit every evening."
) * 3

CONVERSATIONS = [
    ["When does the library open?", "How many books can I borrow?", "What if I return one late?"],
    ["Where is the cafe?", "Is the reading room quiet?", "Can I eat there?"],
    ["Hello!", "What are the opening hours?", "Thank you."],
]

QUESTIONS = ["What was built first?", "What did the railway change?", "What happened in the flood?"]

GEN = {"max_tokens": 12, "temperature": 0.0}


@sgl.function
def multi_turn_chat(s: Any, turns: list[str]) -> None:
    s += sgl.system(SYSTEM_PROMPT)
    for i, question in enumerate(turns):
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen(f"answer_{i}", **GEN))


@sgl.function
def document_qa(s: Any, document: str, questions: list[str]) -> None:
    s += "Read the document, then answer each question.\n\n" + document + "\n\n"
    forks = s.fork(len(questions))
    for f, question in zip(forks, questions, strict=True):
        f += "Question: " + question + "\nAnswer:" + sgl.gen("answer", **GEN)
    forks.join()
    s += "In one line:" + sgl.gen("summary", **GEN)


@sgl.function
def image_qa(s: Any, image_path: str, question: str) -> None:
    s += sgl.user(sgl.image(image_path) + question)
    s += sgl.assistant(sgl.gen("answer", **GEN))


def run_text_programs(backend_url: str) -> dict[str, Any]:
    """Run the text programs on the server at `backend_url`; returns {program: outputs}."""
    backend = sgl.RuntimeEndpoint(backend_url)
    chats = multi_turn_chat.run_batch([{"turns": t} for t in CONVERSATIONS], backend=backend)
    qa = document_qa.run(document=DOCUMENT, questions=QUESTIONS, backend=backend)
    answers = [[s[f"answer_{i}"] for i in range(len(t))] for s, t in zip(chats, CONVERSATIONS, strict=True)]
    return {
        "multi_turn_chat": answers,
        "document_qa": {"answers": list(qa["answer"]), "summary": qa["summary"]},
    }


def run_image_program(
    backend_url: str, image_path: str | Path, chat_template: str = "llama-3-instruct"
) -> dict[str, Any]:
    """Run `image_qa` on the server at `backend_url` for one image. The frontend writes the prompt
    itself, so it needs a chat template whose image token the model knows (mllama: `<|image|>`)."""
    backend = sgl.RuntimeEndpoint(backend_url, chat_template_name=chat_template)
    state = image_qa.run(image_path=str(image_path), question="What is in this picture?", backend=backend)
    return {"image_qa": state["answer"]}
