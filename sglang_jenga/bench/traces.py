"""Request traces: a JSON-lines format, seeded generators, and token materialisation.

Format: one request per line,

    {"id": str, "arrival_s": float, "prompt_len": int, "output_len": int,
     "prefix_group": str | null, "prefix_len": int, "image_tokens": int}

`prompt_len` counts text tokens; `image_tokens` are a request's encoder tokens (mllama: 6404 per image, 4 tiles x
1601), stored apart from the prompt. Requests of one `prefix_group` share their first `prefix_len` prompt tokens
with the group's previous request (in file order): a shared document is a group whose requests all have
prefix_len = document length; a multi-turn session is a group whose prefix grows (turn k's prefix is turn k-1's
prompt and output). Requests of one group with image_tokens > 0 also share the image. Lines are sorted by
arrival. `materialize` turns a trace into token ids so that exactly these prefixes coincide.

Generators (all seeded; `python -m sglang_jenga.bench.traces KIND --n N --seed S --out FILE`):

  chat       ShareGPT-like single-turn chat. Means from the vLLM paper (Kwon et al., SOSP'23, Fig. 11, the
             ShareGPT dataset): input 161.31 and output 337.99 tokens on average (figures as we recall them,
             not re-checked against the PDF here). Lognormal lengths (sigma 1.0 input, 0.8 output) with those
             means, clipped to [4, 4096] and [1, 2048]. No shared prefixes.
  longdoc    arXiv-QA-like questions over long shared documents: documents uniform in [min_doc, max_doc]
             (default 30k-90k tokens), 1-4 questions each (question 20-80 tokens, answer lognormal mean 150),
             questions of one document `spread_s` (2) seconds apart on average.
  mmmu       MMMU-Pro-like multimodal questions for mllama: one image of 6404 encoder tokens, a short text
             prompt (the "vision" setting puts the question in the image: lognormal mean 40 text tokens) and a
             short answer (lognormal mean 24); 20% of the images carry a second question.
  multiturn  Chat sessions. LMSYS-Chat-1M (Zheng et al., ICLR'24, Table 1): 2.0 turns per conversation,
             69.5 tokens per user prompt and 214.5 per response on average (as we recall them). Sessions of
             1-6 turns (geometric, mean 2), a 16-token system prompt, turn k+1 arriving 5-30 s after turn k.

Arrivals are Poisson at `rate` requests (or documents, images, sessions) per second; the defaults saturate the
memory of the budgets used by `compare`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MLLAMA_IMAGE_TOKENS = 6404  # 4 tiles x ((560 / 14)^2 + 1) encoder tokens


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace (see module docstring for the field meanings)."""

    id: str
    arrival_s: float
    prompt_len: int
    output_len: int
    prefix_group: str | None = None
    prefix_len: int = 0
    image_tokens: int = 0

    def __post_init__(self) -> None:
        if self.prompt_len < 1 or self.output_len < 1:
            raise ValueError(f"{self.id}: prompt_len and output_len must be >= 1")
        if not 0 <= self.prefix_len < self.prompt_len:
            raise ValueError(f"{self.id}: need 0 <= prefix_len < prompt_len")
        if self.prefix_len and self.prefix_group is None:
            raise ValueError(f"{self.id}: a shared prefix needs a prefix_group")
        if self.image_tokens < 0 or self.arrival_s < 0:
            raise ValueError(f"{self.id}: negative image_tokens or arrival_s")

    @property
    def total_len(self) -> int:
        """Text tokens the request ever holds: prompt + output."""
        return self.prompt_len + self.output_len


# ------------------------------------------------------------------------------------------- file format
def dump(trace: Iterable[TraceRequest], path: str | Path) -> None:
    """Write one JSON object per line, keys in the documented order."""
    with open(path, "w") as f:
        for r in trace:
            f.write(json.dumps(asdict(r)) + "\n")


def load(path: str | Path) -> list[TraceRequest]:
    """Read a trace; validates every line and the prefix chains (ValueError)."""
    with open(path) as f:
        trace = [TraceRequest(**json.loads(line)) for line in f if line.strip()]
    validate(trace)
    return trace


def validate(trace: Sequence[TraceRequest]) -> None:
    """Ids unique, arrivals sorted, each group's prefix no longer than its previous request's tokens."""
    if len({r.id for r in trace}) != len(trace):
        raise ValueError("request ids are not unique")
    if any(a.arrival_s > b.arrival_s for a, b in zip(trace, trace[1:], strict=False)):
        raise ValueError("requests are not sorted by arrival_s")
    last: dict[str, TraceRequest] = {}
    for r in trace:
        prev = last.get(r.prefix_group) if r.prefix_group is not None else None
        if prev is not None and r.prefix_len > prev.total_len:
            raise ValueError(f"{r.id}: prefix_len {r.prefix_len} exceeds {prev.id}'s {prev.total_len} tokens")
        if r.prefix_group is not None:
            last[r.prefix_group] = r


# ------------------------------------------------------------------------------------ token materialisation
_OWNER_STRIDE = 1 << 20  # token ids of owner k: k * 2^20 + position (documents stay below 2^20 tokens)


@dataclass(frozen=True)
class Tokens:
    """A request's token ids: `seq` = prompt + output (int64), `image_key` identifies its image (or None)."""

    seq: np.ndarray
    image_key: str | None


def materialize(trace: Sequence[TraceRequest]) -> dict[str, Tokens]:
    """Token ids per request id. A group's first request starts with the group's own tokens; a later one
    copies its first prefix_len tokens from the group's previous request (prompt and output). Everything else
    is unique to the request. Deterministic; O(total tokens)."""
    out: dict[str, Tokens] = {}
    last: dict[str, np.ndarray] = {}
    owners = {name: i + 1 for i, name in enumerate(_owner_names(trace))}
    for r in trace:
        seq = owners[r.id] * _OWNER_STRIDE + np.arange(r.total_len, dtype=np.int64)
        if r.prefix_group is not None:
            src = last.get(r.prefix_group)
            if src is None:
                src = owners["group:" + r.prefix_group] * _OWNER_STRIDE + np.arange(r.prefix_len,
                                                                                     dtype=np.int64)
            seq[:r.prefix_len] = src[:r.prefix_len]
            last[r.prefix_group] = seq
        image_key = None
        if r.image_tokens:
            image_key = f"image:{r.prefix_group}" if r.prefix_group is not None else f"image:{r.id}"
        out[r.id] = Tokens(seq, image_key)
    return out


def _owner_names(trace: Sequence[TraceRequest]) -> list[str]:
    names = [r.id for r in trace]
    names += sorted({"group:" + r.prefix_group for r in trace if r.prefix_group is not None})
    return names


# ------------------------------------------------------------------------------------------- generators
def _lognormal(rng: np.random.Generator, mean: float, sigma: float, lo: int, hi: int) -> int:
    """A lognormal draw with the given mean (mu = ln(mean) - sigma^2/2), rounded and clipped."""
    mu = math.log(mean) - sigma * sigma / 2
    return int(min(hi, max(lo, round(rng.lognormal(mu, sigma)))))


def _arrivals(rng: np.random.Generator, n: int, rate: float) -> list[float]:
    """n Poisson arrival times at `rate` per second (all at 0 when rate is infinite)."""
    if math.isinf(rate):
        return [0.0] * n
    return [round(float(t), 6) for t in np.cumsum(rng.exponential(1.0 / rate, n))]


def chat(n: int, seed: int, rate: float = 50.0) -> list[TraceRequest]:
    """ShareGPT-like chat (module docstring)."""
    rng = np.random.default_rng(seed)
    times = _arrivals(rng, n, rate)
    return [TraceRequest(f"chat-{i}", t, _lognormal(rng, 161.31, 1.0, 4, 4096),
                         _lognormal(rng, 337.99, 0.8, 1, 2048)) for i, t in enumerate(times)]


def longdoc(n: int, seed: int, rate: float = 1.0, min_doc: int = 30_000, max_doc: int = 90_000,
            answer_mean: float = 150.0, spread_s: float = 2.0) -> list[TraceRequest]:
    """arXiv-QA-like questions over shared long documents (module docstring); n questions in all, those of one
    document `spread_s` seconds apart on average."""
    rng = np.random.default_rng(seed)
    out: list[TraceRequest] = []
    doc_times = _arrivals(rng, n, rate)
    for d, t0 in enumerate(doc_times):
        doc = int(rng.integers(min_doc, max_doc + 1))
        t = t0
        for q in range(int(rng.integers(1, 5))):
            if len(out) == n:
                break
            out.append(TraceRequest(f"doc{d}-q{q}", round(t, 6), doc + int(rng.integers(20, 81)),
                                    _lognormal(rng, answer_mean, 0.7, 8, 1024), f"doc{d}", doc))
            t += float(rng.exponential(spread_s))
        if len(out) == n:
            break
    return sorted(out, key=lambda r: (r.arrival_s, r.id))


def mmmu(n: int, seed: int, rate: float = 20.0, image_tokens: int = MLLAMA_IMAGE_TOKENS) -> list[TraceRequest]:
    """MMMU-Pro-like image questions (module docstring)."""
    rng = np.random.default_rng(seed)
    out: list[TraceRequest] = []
    for img, t in enumerate(_arrivals(rng, n, rate)):
        questions = 2 if rng.random() < 0.2 else 1
        for q in range(questions):
            if len(out) == n:
                break
            out.append(TraceRequest(f"img{img}-q{q}", round(t + q * float(rng.exponential(1.0)), 6),
                                    _lognormal(rng, 40.0, 0.5, 8, 256), _lognormal(rng, 24.0, 0.8, 1, 512),
                                    f"img{img}", 0, image_tokens))
        if len(out) == n:
            break
    return sorted(out, key=lambda r: (r.arrival_s, r.id))


def multiturn(n: int, seed: int, rate: float = 20.0, system_prompt: int = 16) -> list[TraceRequest]:
    """LMSYS-like multi-turn sessions (module docstring); n turns in all."""
    rng = np.random.default_rng(seed)
    out: list[TraceRequest] = []
    for s, t in enumerate(_arrivals(rng, n, rate)):
        prefix, turns = system_prompt, min(6, int(rng.geometric(0.5)))
        for k in range(turns):
            if len(out) == n:
                break
            prompt = prefix + _lognormal(rng, 69.5, 1.0, 2, 2048)
            output = _lognormal(rng, 214.5, 0.8, 1, 2048)
            out.append(TraceRequest(f"s{s}-t{k}", round(t, 6), prompt, output, f"s{s}", prefix))
            prefix, t = prompt + output, t + float(rng.uniform(5.0, 30.0))
        if len(out) == n:
            break
    return sorted(out, key=lambda r: (r.arrival_s, r.id))


GENERATORS: dict[str, Callable[..., list[TraceRequest]]] = {
    "chat": chat, "longdoc": longdoc, "mmmu": mmmu, "multiturn": multiturn,
}


def generate(kind: str, n: int, seed: int, **kwargs: float) -> list[TraceRequest]:
    """`GENERATORS[kind](n, seed, **kwargs)`, validated."""
    trace = GENERATORS[kind](n, seed, **kwargs)
    validate(trace)
    return trace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate a request trace (JSON lines).")
    p.add_argument("kind", choices=sorted(GENERATORS))
    p.add_argument("--n", type=int, required=True, help="number of requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output file (.jsonl)")
    p.add_argument("--rate", type=float, default=None, help="arrivals per second (inf: all at t=0)")
    p.add_argument("--min-doc", type=int, default=None, help="longdoc: shortest document")
    p.add_argument("--max-doc", type=int, default=None, help="longdoc: longest document")
    p.add_argument("--spread-s", type=float, default=None, help="longdoc: mean seconds between a document's questions")
    args = p.parse_args(argv)
    kwargs = {k: v for k, v in (("rate", args.rate), ("min_doc", args.min_doc), ("max_doc", args.max_doc),
                                ("spread_s", args.spread_s)) if v is not None}
    trace = generate(args.kind, args.n, args.seed, **kwargs)
    dump(trace, args.out)
    total = sum(r.prompt_len + r.image_tokens for r in trace)
    print(f"{len(trace)} requests, {total} prompt tokens, last arrival {trace[-1].arrival_s:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
