"""Layer-type specs: frozen dataclasses that know their own byte sizes.

A *layer type* is a named group of layers that share one cache policy and one page size, e.g. all
full-attention layers of a model ("full"), all its sliding-window layers ("swa"), its Mamba layers ("mamba").
A model is a list of (spec, num_layers) pairs (`ModelSpec`). Bytes are per tensor-parallel rank: pass the
per-rank head counts.

Three page kinds exist (`PageKind`):
  TOKENS   a small page holds `tokens_per_page` (P) consecutive tokens of ALL layers of the type, token-major:
           token_bytes = num_layers * 2 * kv_heads * head_dim * dtype_bytes (K and V), page = P * token_bytes.
           Example: Llama-3.1-8B, 32 layers, 8 kv heads, head_dim 128, bf16 -> 32*2*8*128*2 = 131072 B/token.
  STATE    a small page holds one request's recurrent state for all layers of the type (Mamba, linear
           attention); its size does not depend on P. Example: Qwen3-Next's 36 gated-delta-net layers ->
           77,266,944 B.
  REQUEST  like TOKENS (P encoder tokens per page) but the pages belong to the request's encoder input
           (image tokens of cross-attention), not to positions of its token sequence.

A new layer type = one spec subclass naming its policy (`policy`) + one policy registered under that name
(see policies.py). Nothing else needs editing.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple


class PageKind(enum.Enum):
    """How a type's small pages map to a request (see module docstring)."""

    TOKENS = "tokens"
    STATE = "state"
    REQUEST = "request"


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """One layer type. `name` identifies the type everywhere (allocator, tree, adapter).

    Subclasses set the class variables `policy` (registry name of the cache policy) and `kind`, and implement
    `page_bytes`.
    """

    name: str
    draft: bool = False

    policy: ClassVar[str] = ""
    kind: ClassVar[PageKind] = PageKind.TOKENS

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a layer type needs a non-empty name")

    def page_bytes(self, tokens_per_page: int, num_layers: int) -> int:
        """Bytes of one unpadded small page of this type for `num_layers` layers."""
        raise NotImplementedError

    def token_bytes(self, num_layers: int) -> int:
        """Bytes of one token of all `num_layers` layers (token-row stride); 0 for STATE types."""
        return 0


@dataclass(frozen=True, kw_only=True)
class AttentionSpec(LayerSpec):
    """Base of the token-paged attention types: K and V of `kv_heads` x `head_dim` per layer per token."""

    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.kv_heads, self.head_dim, self.dtype_bytes) <= 0:
            raise ValueError(f"{self.name}: kv_heads, head_dim, dtype_bytes must be positive")

    @property
    def layer_token_bytes(self) -> int:
        """K+V bytes of one token in one layer: 2 * kv_heads * head_dim * dtype_bytes (8,128,bf16 -> 4096)."""
        return 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    def token_bytes(self, num_layers: int) -> int:
        return num_layers * self.layer_token_bytes

    def page_bytes(self, tokens_per_page: int, num_layers: int) -> int:
        return tokens_per_page * self.token_bytes(num_layers)


@dataclass(frozen=True, kw_only=True)
class FullAttentionSpec(AttentionSpec):
    """Causal attention over every previous token."""

    name: str = "full"
    policy: ClassVar[str] = "full"


@dataclass(frozen=True, kw_only=True)
class SlidingWindowSpec(AttentionSpec):
    """Attention over the last `window` tokens (a prefix hit needs only the last `window` tokens before
    it)."""

    name: str = "swa"
    window: int
    policy: ClassVar[str] = "sliding_window"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window <= 0:
            raise ValueError(f"{self.name}: window must be positive")


@dataclass(frozen=True, kw_only=True)
class ChunkedLocalSpec(AttentionSpec):
    """Chunked local attention (Llama-4): token i attends to tokens of its chunk [i//chunk*chunk, i]."""

    name: str = "chunked"
    chunk: int
    policy: ClassVar[str] = "chunked_local"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk <= 0:
            raise ValueError(f"{self.name}: chunk must be positive")


@dataclass(frozen=True, kw_only=True)
class CrossAttentionSpec(AttentionSpec):
    """Cross-attention over per-request encoder tokens (mllama image tokens), paged P encoder tokens per page.

    `encoder_tokens` is the maximum per request (mllama: 1601 tokens per tile * 4 tiles = 6404).
    """

    name: str = "cross"
    encoder_tokens: int
    policy: ClassVar[str] = "cross_attention"
    kind: ClassVar[PageKind] = PageKind.REQUEST


@dataclass(frozen=True, kw_only=True)
class MambaSpec(LayerSpec):
    """Recurrent state (Mamba2, gated delta net, ...): `state_bytes_per_layer` per request per layer.

    Prefix caching keeps states only every `checkpoint_interval` tokens (512 as in the Jenga paper) and at the
    end of a cached sequence.
    """

    name: str = "mamba"
    state_bytes_per_layer: int
    checkpoint_interval: int = 512
    policy: ClassVar[str] = "mamba"
    kind: ClassVar[PageKind] = PageKind.STATE

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.state_bytes_per_layer <= 0 or self.checkpoint_interval <= 0:
            raise ValueError(f"{self.name}: state bytes and checkpoint interval must be positive")

    def page_bytes(self, tokens_per_page: int, num_layers: int) -> int:
        return num_layers * self.state_bytes_per_layer


def as_draft(spec: LayerSpec, prefix: str = "draft_") -> LayerSpec:
    """The same layer type for a speculative-decoding draft model: a distinct type named `prefix + name`.

    `as_draft(FullAttentionSpec(kv_heads=8, head_dim=128)).name == "draft_full"`; same policy, own pages.
    """
    return dataclasses.replace(spec, name=prefix + spec.name, draft=True)


def mamba2_state_bytes(
    *, num_heads: int, head_dim: int, state_size: int, n_groups: int, conv_kernel: int,
    conv_dtype_bytes: int = 2, ssm_dtype_bytes: int = 4,
) -> int:
    """Per-layer Mamba2 state: conv state (conv_dim x (kernel-1)) + SSM state (heads x head_dim x state).

    conv_dim = num_heads*head_dim + 2*n_groups*state_size (as sglang's Mamba2StateShape.create).
    Defaults follow sglang 0.5.23: conv state bf16, SSM ("temporal") state float32 (mamba2_state_dtype).
    Nemotron-H-8B (128 heads x 64, state 128, 8 groups, kernel 4): conv 10240*3*2 = 61,440 B,
    ssm 128*64*128*4 = 4,194,304 B -> 4,255,744 B per layer.
    """
    conv_dim = num_heads * head_dim + 2 * n_groups * state_size
    conv = conv_dim * (conv_kernel - 1) * conv_dtype_bytes
    ssm = num_heads * head_dim * state_size * ssm_dtype_bytes
    return conv + ssm


def gated_delta_net_state_bytes(
    *, num_k_heads: int, k_head_dim: int, num_v_heads: int, v_head_dim: int, conv_kernel: int,
    conv_dtype_bytes: int = 2, ssm_dtype_bytes: int = 4,
) -> int:
    """Per-layer gated-delta-net (Qwen3-Next linear attention) state.

    conv_dim = 2*num_k_heads*k_head_dim + num_v_heads*v_head_dim; recurrent state = v_heads x k_dim x v_dim.
    Qwen3-Next (16 k heads x 128, 32 v heads x 128, kernel 4): conv 8192*3*2 = 49,152 B,
    recurrent 32*128*128*4 = 2,097,152 B -> 2,146,304 B per layer (sglang defaults, see mamba2_state_bytes).
    """
    conv_dim = 2 * num_k_heads * k_head_dim + num_v_heads * v_head_dim
    conv = conv_dim * (conv_kernel - 1) * conv_dtype_bytes
    ssm = num_v_heads * k_head_dim * v_head_dim * ssm_dtype_bytes
    return conv + ssm


class LayerGroup(NamedTuple):
    """All `num_layers` layers of one type."""

    spec: LayerSpec
    num_layers: int


@dataclass(frozen=True)
class ModelSpec:
    """A model as layer groups; type names are unique. Layers that hold no cache (MLP) are simply absent."""

    name: str
    groups: tuple[LayerGroup, ...]

    def __post_init__(self) -> None:
        names = [g.spec.name for g in self.groups]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{self.name}: need at least one group and unique type names, got {names}")
        if any(g.num_layers <= 0 for g in self.groups):
            raise ValueError(f"{self.name}: every group needs num_layers > 0")

    @classmethod
    def of(cls, name: str, pairs: Iterable[tuple[LayerSpec, int]]) -> ModelSpec:
        """Build from (spec, num_layers) pairs."""
        return cls(name, tuple(LayerGroup(s, n) for s, n in pairs))

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(g.spec.name for g in self.groups)

    def group(self, name: str) -> LayerGroup:
        for g in self.groups:
            if g.spec.name == name:
                return g
        raise KeyError(name)

    def with_draft(self, draft: ModelSpec) -> ModelSpec:
        """This model plus a draft model's groups renamed with `as_draft` (e.g. "full" -> "draft_full")."""
        extra = tuple(LayerGroup(as_draft(g.spec), g.num_layers) for g in draft.groups)
        return ModelSpec(f"{self.name}+{draft.name}", self.groups + extra)


def ceil_div(a: int, b: int) -> int:
    """Ceiling division for non-negative a and positive b."""
    return -(-a // b)


def lcm_all(values: Sequence[int]) -> int:
    """Least common multiple of positive ints (1 for an empty sequence)."""
    return math.lcm(*values) if values else 1
