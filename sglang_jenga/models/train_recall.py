"""Train a zoo model on the recall task (recall.py) on the CPU; writes the safetensors the zoo ships.

    python -m sglang_jenga.models.train_recall [--model gemma3] [--steps 1000] [--out PATH]

From-scratch tiny models do not find the two-step lookup on their own in minutes: runs here with the answer loss
alone stayed at chance for thousands of steps. So three attention heads are also told where to look (auxiliary
cross-entropy on their attention rows), and two logit-lens probes ask the residual, read through the
unembedding, to name what those heads moved; the weights are still learned by gradient descent from the data:

    layer 0            at a fact's key token ("red"), look at its value ("apple"): the value moves to the key
                       (probe: after layer 0 that position names "apple")
    layer 1            where the answer's thing comes next, look at the question's key: the key moves there
                       (probe: after layer 1 that position names "red")
    last full layer    there, look at the fact's key token, hundreds of tokens back: its value is the answer

Layers 0 and 1 are sliding-window layers in Gemma-3; the targets are at most ~20 tokens back. Head 0 of each of
those layers; every other head and weight is free. Fixed seed, fp32, the CPU's threads, batch 16 of up to 640
tokens, 2-8 questions each, 1,000 steps. On 2 cores (2026-12-07): Gemma-3's heads and probes find their targets
by step ~150 and its answers follow by step ~190 (answer tokens 0.99 right), llama's by step ~550; the shipped
runs took 34 min (gemma3, 2 threads) and 21 min (llama, 1 thread) side by side; alone, Gemma-3 takes ~0.8 s a
step (~13 min). Without the probes Gemma-3 needed ~550 steps and llama did not answer after 1,000. The weights
are rounded to the config's dtype (bfloat16), checked on held-out documents, and written with sglang-loadable
names. Exit status 1 (weights still written) if held-out recall accuracy is below 0.95.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sglang_jenga.models import build
from sglang_jenga.models.recall import answer, chat_text, document_text, fact, make_document, question
from sglang_jenga.models.tokenizer import build_tokenizer
from sglang_jenga.models.zoo import MODELS

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MAX_TOKENS = 640


@dataclass
class Sample:
    """One training text: token ids, the positions predicting answer tokens, and the heads' targets as
    (query position, key position) pairs."""

    ids: list[int]
    predict: list[int]
    move_value: list[tuple[int, int]]
    move_key: list[tuple[int, int]]
    lookup: list[tuple[int, int]]


def make_sample(tokenizer: Any, rng: random.Random) -> Sample:
    """A random document (2-8 facts) in a random format with 2-8 questions about it, answered rightly."""
    while True:
        doc = make_document(rng, rng.randint(2, 8), (0, 2))
        turns = [(k, v) for v, k in rng.choices(doc.facts, k=rng.randint(2, 8))]
        text = (chat_text if rng.random() < 0.5 else document_text)(doc.text, turns)
        enc = tokenizer.encode(text)
        if len(enc.ids) <= MAX_TOKENS:
            return _locate(text, enc, doc.facts, turns)


def _locate(text: str, enc: Any, facts: tuple[tuple[str, str], ...], turns: list[tuple[str, str]]) -> Sample:
    token_at = [0] * (len(text) + 1)
    for i, (a, b) in enumerate(enc.offsets):
        for c in range(a, b):
            token_at[c] = i
    key_pos = {}
    move_value = []
    for value, key in facts:
        at = text.index(fact(value, key))
        key_pos[key] = token_at[at + len(f"The {value} is in the ")]
        move_value.append((key_pos[key], token_at[at + len("The ")]))
    predict, move_key, lookup = [], [], []
    cursor = 0
    for key, value in turns:
        q = text.index(question(key), cursor)
        a = text.index(answer(value), q)
        cursor = a + len(answer(value))
        the = token_at[a + 1]  # " The": the position whose next token is the thing
        move_key.append((the, token_at[q + len("What is in the ")]))
        lookup.append((the, key_pos[key]))
        predict += list(range(token_at[a] - 1, token_at[cursor]))  # " The", thing, ".", "\n"
    return Sample(enc.ids, predict, move_value, move_key, lookup)


def circuit_layers(config: Any) -> tuple[int, int, int]:
    """(value-moving, key-moving, lookup) layers: 0, 1 and the last full-attention layer."""
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    return 0, 1, max(i for i, t in enumerate(types) if t == "full_attention")


def _pairs(batch: list[Sample], field: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch rows, query positions, key positions) of every sample's `field` pairs."""
    pairs = [(b, q, k) for b, s in enumerate(batch) for q, k in getattr(s, field)]
    b, q, k = (torch.tensor(x) for x in zip(*pairs, strict=True))
    return b, q, k


def _head_loss(attn: torch.Tensor, batch: list[Sample], field: str) -> torch.Tensor:
    """Mean -log attention weight of head 0 from each `field` pair's query to its key position."""
    b, q, k = _pairs(batch, field)
    return -torch.log(attn[b, 0, q, k] + 1e-6).mean()


def batch_loss(model: Any, batch: list[Sample], layers: tuple[int, int, int],
               pad: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Answer cross-entropy + the three heads' losses; returns (loss, {part: value} for the progress bar)."""
    width = max(len(s.ids) for s in batch)
    ids = torch.tensor([s.ids + [pad] * (width - len(s.ids)) for s in batch])
    out = model.model(input_ids=ids, output_attentions=True, output_hidden_states=True)
    rows = torch.tensor([b for b, s in enumerate(batch) for _ in s.predict])
    pos = torch.tensor([p for s in batch for p in s.predict])
    logits = model.lm_head(out.last_hidden_state[rows, pos])
    target = ids[rows, pos + 1]
    loss = torch.nn.functional.cross_entropy(logits, target)
    parts = {"answer": loss.item(), "right": (logits.argmax(-1) == target).float().mean().item()}
    # Logit-lens probes: after the value-moving layer a fact's key position, and after the key-moving layer the
    # answer position, read through the unembedding, name what was moved there. The lookup layer's query then
    # matches the fact's key token directly, and its output only has to pass the value on.
    for layer, field in zip(layers[:2], ("move_value", "move_key"), strict=True):
        loss = loss + 0.5 * _probe(model, out.hidden_states[layer + 1], ids, batch, field, parts)
    for layer, field in zip(layers, ("move_value", "move_key", "lookup"), strict=True):
        head = _head_loss(out.attentions[layer], batch, field)
        parts[field] = head.item()
        loss = loss + 0.5 * head
    return loss, parts


def _probe(model: Any, hidden: torch.Tensor, ids: torch.Tensor, batch: list[Sample], field: str,
           parts: dict[str, float]) -> torch.Tensor:
    """Cross-entropy of the unembedded `hidden` at each (query, key) pair's query against the key's token."""
    b, q, k = _pairs(batch, field)
    loss = torch.nn.functional.cross_entropy(model.lm_head(model.model.norm(hidden[b, q])), ids[b, k])
    parts[f"probe_{field}"] = loss.item()
    return loss


@torch.no_grad()
def recall_accuracy(model: Any, samples: list[Sample]) -> float:
    """Share of questions whose thing token is the model's greedy choice (held-out samples)."""
    right = total = 0
    for s in samples:
        logits = model(input_ids=torch.tensor([s.ids])).logits[0]
        for the, _ in s.lookup:
            right += int(logits[the].argmax().item() == s.ids[the + 1])
            total += 1
    return right / total


def train(name: str, steps: int, batch_size: int, lr: float, seed: int) -> tuple[Any, float]:
    """Train zoo model `name`; returns (model in its config dtype's precision, held-out recall accuracy)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    random.seed(seed)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = AutoConfig.from_pretrained(build(name, tmp))
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").float()  # type: ignore[no-untyped-call]
    tokenizer = build_tokenizer(MODELS[name].family)
    pad = MODELS[name].family.token_id(MODELS[name].family.pad)
    layers = circuit_layers(config)
    rng, held_rng = random.Random(seed), random.Random(seed + 1)
    held_out = [make_sample(tokenizer, held_rng) for _ in range(64)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    bar = tqdm(range(steps), desc=f"train {name}", unit="step")
    for step in bar:
        for group in opt.param_groups:  # 100 warm-up steps, flat, the last 30% linearly down to lr / 10
            group["lr"] = lr * min(1.0, (step + 1) / 100, 0.1 + 0.9 * (steps - step) / (0.3 * steps))
        loss, parts = batch_loss(model, [make_sample(tokenizer, rng) for _ in range(batch_size)], layers, pad)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.set_postfix({k: f"{v:.2f}" for k, v in parts.items()})
    model = model.to(_dtype(config)).float()  # what the served weights will be
    model.eval()
    return model, recall_accuracy(model, held_out)


def _dtype(config: Any) -> torch.dtype:
    """The config's dtype (bfloat16 for the zoo), whether transformers keeps it as a string or a dtype."""
    dtype: torch.dtype = getattr(torch, str(config.dtype).removeprefix("torch."))
    return dtype


def save(model: Any, out: Path) -> Path:
    """Write the model's weights (config dtype) as one safetensors file at `out`."""
    from safetensors.torch import save_file

    dtype = _dtype(model.config)
    tied = model.config.tie_word_embeddings  # then lm_head.weight is embed_tokens.weight: stored once
    tensors = {k: v.to(dtype).contiguous() for k, v in model.state_dict().items()
               if not (tied and k == "lm_head.weight")}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": "pt"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang_jenga.models.train_recall", description=__doc__)
    parser.add_argument("--model", default="gemma3", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="default: the package's weights/<model>.safetensors")
    args = parser.parse_args(argv)
    start = time.monotonic()
    model, accuracy = train(args.model, args.steps, args.batch_size, args.lr, args.seed)
    path = save(model, args.out or WEIGHTS_DIR / f"{args.model}.safetensors")  # kept for a look even if too weak
    print(f"held-out recall accuracy {accuracy:.3f}; wrote {path} in {time.monotonic() - start:.0f} s")
    return 0 if accuracy >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
