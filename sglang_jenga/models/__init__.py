"""Tiny model zoo: deterministic HF-style model directories (config + locally trained tokenizer).

    from sglang_jenga.models import NAMES, build
    path = build("gemma3", "/tmp/zoo/gemma3")  # serve: --model-path /tmp/zoo/gemma3 --load-format dummy
    path = build("gemma3", "/tmp/zoo/gemma3-recall", trained=True)  # serve: --model-path /tmp/zoo/gemma3-recall

Without `trained` no weights are written (random `--load-format dummy` weights). With it, the weights trained
on the recall task (recall.py, train_recall.py) that ship with the package are copied in as
model.safetensors: the model answers "What is in the red room?" from facts hundreds of tokens back.

CLI: `python -m sglang_jenga.models {NAME|all} OUTDIR`, `python -m sglang_jenga.models --list`.
The same name always writes byte-identical files (see tests/models/test_zoo.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sglang_jenga.models.tokenizer import write_tokenizer
from sglang_jenga.models.zoo import MAX_POSITIONS, MODELS, ModelSpec

NAMES: tuple[str, ...] = tuple(MODELS)
WEIGHTS = Path(__file__).resolve().parent / "weights"  # <name>.safetensors: trained on the recall task
TRAINED: tuple[str, ...] = tuple(n for n in NAMES if (WEIGHTS / f"{n}.safetensors").exists())

__all__ = ["NAMES", "MODELS", "TRAINED", "ModelSpec", "build", "build_all", "describe"]


def describe(name: str) -> str:
    """One-line description of zoo model `name`; raises ValueError for an unknown name."""
    return _spec(name).description


def build(name: str, outdir: str | Path, trained: bool = False) -> Path:
    """Write zoo model `name` into `outdir` (created if missing; our files overwritten, others left alone),
    with its recall-trained weights if `trained`.

    Returns `outdir` as a Path. Raises ValueError for an unknown name, or with `trained` for a model that has
    no trained weights (see TRAINED). Cost: ~0.1 s (BPE training, cached per tokenizer family in a process).
    """
    spec = _spec(name)
    if trained and name not in TRAINED:
        raise ValueError(f"zoo model {name!r} has no trained weights; trained: {', '.join(TRAINED) or 'none'}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for file_name, obj in spec.files(spec.family).items():
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (out / file_name).write_text(text, encoding="utf-8")
    write_tokenizer(spec.family, out, MAX_POSITIONS)
    if trained:
        shutil.copyfile(WEIGHTS / f"{name}.safetensors", out / "model.safetensors")
    return out


def build_all(outdir: str | Path) -> list[Path]:
    """Write every zoo model into `outdir/NAME`; returns the model directories in NAMES order."""
    return [build(name, Path(outdir) / name) for name in NAMES]


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(NAMES)}")
    return MODELS[name]
