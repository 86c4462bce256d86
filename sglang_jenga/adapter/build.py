"""Jenga's replacement for sglang's `KVCacheConfigurator.configure`: one buffer, typed pools.

Budget: the bytes sglang's default manager would give the KV cache with the same flags.
`--max-total-tokens N` means N tokens of the default layout (N tokens in every attention layer;
for models sglang itself runs with hybrid SWA memory, N full-attention tokens plus
`N * --swa-full-tokens-ratio` sliding-window tokens), plus `--max-mamba-cache-size` states for
Mamba / linear-attention hybrids; without it, the profiled budget of `--mem-fraction-static`. Jenga
then fits as many tokens and states of each type as that byte budget allows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import torch

from sglang_jenga.adapter.allocator import JengaEncoderDecoderAllocator, JengaSWAAllocator, JengaTokenAllocator
from sglang_jenga.adapter.buffer import JengaBuffer, stage_rows
from sglang_jenga.adapter.compat import (
    GEMMA_ARCHITECTURES,
    build_req_to_token_pool,
    draft_layer_counts,
    draft_model_config,
    mamba_args,
    max_running_requests,
    parallel_sizes,
    pipeline_min,
    pipeline_stages,
    profile_available_bytes,
    req_to_token_context_len,
    schedule_args,
    sglang_classes,
)
from sglang_jenga.adapter.mamba import (
    JengaHybridLinearKVPool,
    JengaHybridReqToTokenPool,
    JengaStateTokenAllocator,
    state_entry_bytes,
    state_type,
)
from sglang_jenga.adapter.pool import JengaMHAPool, JengaSWAKVPool, JengaTypedKVPool
from sglang_jenga.adapter.types import Role, role_of
from sglang_jenga.core import (
    CrossAttentionSpec,
    FullAttentionSpec,
    LayerSpec,
    MambaSpec,
    ModelSpec,
    SlidingWindowSpec,
    plan_layout,
)
from sglang_jenga.core.specs import ceil_div

_sgl = sglang_classes()
logger = logging.getLogger(__name__)
_SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


class UnsupportedModelError(ValueError):
    """The model or flags cannot run under --memory-manager jenga; the message names what to change."""


class LayerGroup(NamedTuple):
    """One jenga layer type of the model and the global ids of its layers (the whole model's)."""

    spec: LayerSpec
    layer_ids: tuple[int, ...]


@dataclass(frozen=True)
class ModelLayers:
    """The model's layer types with their layers (tokens type first), the head geometry all its attention
    types share, the layers of every pipeline stage and of this one. Each type plays one sglang role
    (adapter/types.py).

    Every stage plans the same layout, so that all make the same decisions (buffer.py, pipeline stages): each
    type with the most layers of it any stage holds. Without pipeline parallelism that is the whole model.
    (With the whole model's counts instead, a stage whose mix differs from the model's would pad its rows
    more: mellum over 2 stages, 419 large pages instead of 559 at the same budget.) The pools hold this
    stage's layers."""

    groups: tuple[LayerGroup, ...]
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    stage: range
    stages: tuple[range, ...]
    mamba_params: Any = None  # sglang's cache params of the state layers (shapes and dtypes)
    draft: Mapping[str, int] = field(default_factory=dict)  # a draft model's layers per type (`_draft_layers`)

    def model_spec(self, name: str) -> ModelSpec:
        return ModelSpec.of(name, [(g.spec, max(sum(i in s for i in g.layer_ids) for s in self.stages)
                                    + self.draft.get(g.spec.name, 0)) for g in self.groups])

    def layer_ids(self, role: Role) -> list[int]:
        """Global ids of this stage's layers of the type in `role` (empty if it has none)."""
        return [i for g in self.groups if role_of(g.spec).role is role for i in g.layer_ids if i in self.stage]

    def stage_layers(self) -> dict[str, int]:
        """This stage's number of layers of each type, a draft model's included (they follow the target's in
        each row)."""
        return {g.spec.name: sum(i in self.stage for i in g.layer_ids) + self.draft.get(g.spec.name, 0)
                for g in self.groups}

    def with_draft(self, role: Role) -> int:
        """This stage's layers of the type in `role`, plus the draft model's layers stored in its rows."""
        name = next((g.spec.name for g in self.groups if role_of(g.spec).role is role), None)
        return len(self.layer_ids(role)) + (self.draft.get(name, 0) if name else 0)

    @property
    def attention_layers(self) -> int:
        """This stage's layers that keep K and V per token (every role but the state's), draft layers included."""
        return sum(self.with_draft(role) for role in Role if role is not Role.STATE)

    @property
    def state_bytes(self) -> int:
        """One request's state, this stage's state layers (0 without state layers)."""
        n = len(self.layer_ids(Role.STATE))
        return state_entry_bytes(self.mamba_params, n) if n else 0


def describe_layers(kvc: Any) -> ModelLayers:
    """Read the layer types of the whole model and this stage's range off sglang's configurator; raise
    UnsupportedModelError otherwise."""
    mc, info = kvc.model_config, kvc.layer_info
    pipelined = pipeline_stages(mc.num_hidden_layers)
    _reject_unsupported(kvc, pipelined=bool(pipelined))
    tp, dcp = parallel_sizes()
    in_stage = range(info.start_layer, info.end_layer)
    stages = pipelined or (in_stage,)
    if in_stage not in stages:
        raise UnsupportedModelError(f"--memory-manager jenga cannot serve this configuration: this pipeline stage "
                                    f"runs layers {in_stage}, not one of sglang's partition {stages}. "
                                    "Drop --pp-size or run with --memory-manager default.")
    full, swa, mamba_ids, mamba_params = list(range(max(mc.num_hidden_layers, info.end_layer))), [], [], None
    if kvc.mambaish_config is not None:
        mamba_params = kvc.mambaish_config.mamba2_cache_params
        mamba_ids = list(mamba_params.layers)
        full = list(kvc.mambaish_config.full_attention_layer_ids)
    elif info.swa_attention_layer_ids is not None:
        full, swa = list(mc.full_attention_layer_ids), list(mc.swa_attention_layer_ids)
    cross = [i for i in getattr(mc.hf_text_config, "cross_attention_layers", None) or [] if i in full]
    full = [i for i in full if i not in cross]
    if not full:
        raise UnsupportedModelError("--memory-manager jenga needs at least one full-attention layer")
    if cross and len(cross) > len(full):
        raise UnsupportedModelError(
            f"--memory-manager jenga cannot serve this configuration: {mc.hf_config.architectures[0]} has more "
            "cross-attention than self-attention layers. Run it with --memory-manager default."
        )
    kv_heads, dtype = mc.get_num_kv_heads(tp, dcp), kvc.kv_cache_dtype
    geo: dict[str, Any] = {"kv_heads": kv_heads, "head_dim": mc.head_dim,
                           "dtype_bytes": torch.empty((), dtype=dtype).element_size()}
    groups = [LayerGroup(FullAttentionSpec(**geo), tuple(full))]
    if swa:
        groups.append(LayerGroup(SlidingWindowSpec(window=kvc.sliding_window_size, **geo), tuple(swa)))
    if cross:
        groups.append(LayerGroup(CrossAttentionSpec(encoder_tokens=_encoder_tokens(mc), **geo), tuple(cross)))
    if mamba_ids:
        per_layer = state_entry_bytes(mamba_params, len(mamba_ids)) // len(mamba_ids)
        groups.append(LayerGroup(MambaSpec(state_bytes_per_layer=per_layer), tuple(mamba_ids)))
    draft = _draft_layers(kvc, groups, kv_heads, mc.head_dim)
    return ModelLayers(tuple(groups), kv_heads, mc.head_dim, dtype, in_stage, stages, mamba_params, draft)


def _draft_layers(kvc: Any, groups: list[LayerGroup], kv_heads: int, head_dim: int) -> dict[str, int]:
    """The layers of a speculative-decoding draft model (EAGLE, EAGLE3, STANDALONE) per jenga type: each
    draft layer is stored in the rows of the target's type with the same policy, after the target's layers.

    Why not a type of its own: sglang indexes the draft model's KV pool with the target's slots (the same
    `out_cache_loc` and `req_to_token` rows; its attention backends translate none), and the draft needs its
    KV at exactly the positions the target keeps. So a draft layer's KV sits in the same rows, allocated,
    cached, evicted and freed with them, and the large pages (whose size counts the draft layers) free whole.
    {} without a draft model (NGRAM, no speculation)."""
    layers = draft_layer_counts(kvc)
    if not layers:
        return {}
    n_full, n_swa = layers
    mc = draft_model_config(kvc)
    tp, dcp = parallel_sizes()
    if (mc.get_num_kv_heads(tp, dcp), mc.head_dim, mc.v_head_dim) != (kv_heads, head_dim, head_dim):
        raise UnsupportedModelError(
            f"--memory-manager jenga cannot serve this configuration: the draft model has "
            f"{mc.get_num_kv_heads(tp, dcp)} KV heads of {mc.head_dim}/{mc.v_head_dim} dims, the target "
            f"{kv_heads} of {head_dim} (jenga stores draft layers in the target's rows). "
            "Use a draft with the target's attention shape or --memory-manager default.")
    by_role = {role_of(g.spec).role: g.spec.name for g in groups}
    if n_swa and Role.PAIRED not in by_role:
        raise UnsupportedModelError(
            "--memory-manager jenga cannot serve this configuration: the draft model has sliding-window layers "
            "and the target none. Use another draft or --memory-manager default.")
    out = {by_role[Role.TOKENS]: n_full}
    if n_swa:
        out[by_role[Role.PAIRED]] = n_swa
    return {name: n for name, n in out.items() if n}


def _has_cross_attention(mc: Any) -> bool:
    return bool(getattr(mc.hf_text_config, "cross_attention_layers", None))


def _encoder_tokens(mc: Any) -> int:
    """Most encoder tokens of one request (mllama: tiles x (patches + 1)); 0 without a vision tower."""
    vision = getattr(mc.hf_config, "vision_config", None)
    if vision is None:
        return 0
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    return int(vision.max_num_tiles * patches)


def _reject_unsupported(kvc: Any, *, pipelined: bool) -> None:
    mc = kvc.model_config
    arch = mc.hf_config.architectures[0]
    problems = []
    if not kvc.spec_algorithm.is_none():
        if kvc.mambaish_config is not None:
            problems.append(f"--speculative-algorithm with {arch}'s Mamba/linear-attention layers (sglang's verify "
                            "writes per-draft-token states that jenga's state pool does not keep; drop it)")
        if _has_cross_attention(mc):
            problems.append(f"--speculative-algorithm with {arch}'s cross-attention layers (not supported; drop it)")
        if pipelined:
            problems.append("--speculative-algorithm with --pp-size (not supported; drop one)")
    if kvc.mambaish_config is not None:
        _, extra_buffer, other = mamba_args()
        if kvc.is_hybrid_swa:
            problems.append(f"{arch} has both Mamba/linear-attention and sliding-window layers (not supported)")
        if pipelined:
            problems.append(f"--pp-size with {arch}'s Mamba/linear-attention layers (not tested under jenga; "
                            "drop --pp-size)")
        if extra_buffer:
            problems.append("--mamba-radix-cache-strategy extra_buffer (use no_buffer)")
        if other:
            problems.append("int8 Mamba checkpoints or ReplaySSM rings (drop those flags)")
    if kvc.use_mla_backend:
        problems.append(f"{arch} uses MLA attention (not supported)")
    if kvc.is_hybrid_swa_compress:
        problems.append(f"{arch} compresses its sliding-window KV (not supported)")
    if mc.v_head_dim != mc.head_dim:
        problems.append(f"{arch} has v_head_dim {mc.v_head_dim} != head_dim {mc.head_dim}")
    if kvc.kv_cache_dtype not in _SUPPORTED_DTYPES:
        problems.append(f"--kv-cache-dtype {kvc.kv_cache_dtype} (use auto, bfloat16, float16 or float32)")
    if kvc.page_size != 1 and kvc.mambaish_config is not None:
        problems.append(f"--page-size {kvc.page_size} with {arch}'s Mamba/linear-attention layers (jenga keeps "
                        "their states with sglang's no_buffer strategy, which takes --page-size 1 only; use it)")
    if kvc.page_size != 1 and _has_cross_attention(mc):
        problems.append(f"--page-size {kvc.page_size} with {arch}'s cross-attention layers (a page would hold "
                        "both encoder and text positions, which jenga keeps in separate layer types; use "
                        "--page-size 1)")
    if problems:
        raise UnsupportedModelError(
            "--memory-manager jenga cannot serve this configuration: " + "; ".join(problems)
            + ". Change these or run with --memory-manager default."
        )


def budget_bytes(kvc: Any, layers: ModelLayers, pre_model_load_memory: int) -> int:
    """Bytes of KV the default manager would use with these flags (module docstring)."""
    e = torch.empty((), dtype=layers.dtype).element_size()
    cell = 2 * layers.kv_heads * layers.head_dim * e
    profiled = profile_available_bytes(kvc, pre_model_load_memory)
    max_tokens, swa_ratio = schedule_args()
    states = (mamba_args()[0] or 0) * layers.state_bytes
    if max_tokens is None:
        return profiled + states  # sglang's profile leaves the Mamba states out
    arch = kvc.model_config.hf_config.architectures[0]
    paired = layers.with_draft(Role.PAIRED)
    if paired and arch not in GEMMA_ARCHITECTURES:  # sglang runs it with hybrid SWA memory
        tokens = layers.with_draft(Role.TOKENS)
        wanted = max_tokens * cell * tokens + int(max_tokens * swa_ratio) * cell * paired
    else:
        wanted = max_tokens * cell * layers.attention_layers
    return min(wanted + states, profiled + states)


def configure(kvc: Any, pre_model_load_memory: int) -> Any:
    """Build the jenga buffer, pools, allocator and req_to_token pool; returns KVCacheConfigResult. A
    speculative-decoding draft worker gets its pool over the target's buffer (`configure_draft`)."""
    if kvc.is_draft_worker:
        return configure_draft(kvc)
    layers = describe_layers(kvc)
    layout = plan_layout(layers.model_spec(kvc.model_config.hf_config.architectures[0]), tokens_per_page=kvc.page_size)
    budget = budget_bytes(kvc, layers, pre_model_load_memory)
    large_bytes = stage_rows(layout, layers.stage_layers()).large_page_bytes
    # One large page is the reserved padding page; pipeline stages take the smallest count of any stage.
    num_large = pipeline_min(budget // large_bytes - 1)
    if num_large <= 0:
        raise UnsupportedModelError(
            f"KV budget of {budget} B is below two large pages of {large_bytes} B; "
            "raise --max-total-tokens or --mem-fraction-static"
        )
    jenga = JengaBuffer(layout, num_large, kvc.device, layers.stage_layers(), draft_layers=layers.draft)
    if jenga.types.state:
        return _configure_state_model(kvc, jenga, layers, budget)
    info = kvc.layer_info
    pools = build_pools(jenga, layers, kvc.device, (info.start_layer, info.end_layer))
    full_cap, swa_cap = _capacities(jenga)
    max_reqs = kvc.resolve_max_num_reqs(full_cap)
    paired = jenga.types.paired is not None
    config = _sgl.MemoryPoolConfig(
        max_total_num_tokens=full_cap, max_running_requests=max_reqs,
        full_max_total_num_tokens=full_cap if paired else None,
        swa_max_total_num_tokens=swa_cap if paired else None,
    )
    req_to_token_pool = build_req_to_token_pool(kvc, max_reqs)
    logger.info(plan_line(jenga, budget, full_cap, swa_cap))
    return _sgl.KVCacheConfigResult(
        max_total_num_tokens=full_cap, max_running_requests=max_reqs,
        full_max_total_num_tokens=config.full_max_total_num_tokens,
        swa_max_total_num_tokens=config.swa_max_total_num_tokens,
        req_to_token_pool=req_to_token_pool, token_to_kv_pool=pools.pool,
        token_to_kv_pool_allocator=pools.allocator, memory_pool_config=config,
    )


def configure_draft(kvc: Any) -> Any:
    """The draft worker of EAGLE / EAGLE3 / STANDALONE: a KV pool over the draft layers' views of the target's
    rows (`_draft_layers`), with sglang's shared req_to_token pool and the target's token allocator (sglang
    hands both to the draft's configurator)."""
    allocator = kvc.token_to_kv_pool_allocator
    jenga: JengaBuffer | None = getattr(allocator, "jenga", None)
    if jenga is None:
        raise UnsupportedModelError("--memory-manager jenga: the draft model's target runs without jenga's pools")
    target_dtype = allocator.get_kvcache().dtype
    if kvc.kv_cache_dtype != target_dtype:
        raise UnsupportedModelError(
            f"--memory-manager jenga cannot serve this configuration: the draft KV dtype {kvc.kv_cache_dtype} "
            f"differs from the target's {target_dtype} (jenga stores both in the same rows). "
            "Drop --speculative-draft-kv-cache-dtype.")
    info, mc = kvc.layer_info, kvc.model_config
    ids = list(range(info.start_layer, info.end_layer))
    swa_ids = list(info.swa_attention_layer_ids or [])
    full_ids = list(info.full_attention_layer_ids) if info.full_attention_layer_ids is not None else ids
    types = jenga.types
    wanted = {types.tokens: len(full_ids), **({types.paired: len(swa_ids)} if types.paired else {})}
    if swa_ids and not types.paired or {n: c for n, c in wanted.items() if c} != dict(jenga.draft_layers):
        raise UnsupportedModelError(
            f"--memory-manager jenga: the draft model has {len(full_ids)} full-attention and {len(swa_ids)} "
            f"sliding-window layers, the target's plan stored {dict(jenga.draft_layers)}")
    tp, dcp = parallel_sizes()
    common = {"head_num": mc.get_num_kv_heads(tp, dcp), "head_dim": mc.head_dim, "v_head_dim": mc.head_dim,
              "device": kvc.device, "enable_memory_saver": False}
    share = draft_reported_bytes(jenga)

    def first(name: str) -> int:  # the draft's first layer in the rows of type `name`: after the target's
        return jenga.stage.rows[name].layers - jenga.draft_layers[name]

    if swa_ids:
        swa = cast("str", types.paired)
        pool = JengaSWAKVPool(
            jenga=jenga, dtype=target_dtype, head_num=common["head_num"], head_dim=common["head_dim"],
            swa_attention_layer_ids=swa_ids, full_attention_layer_ids=full_ids, device=kvc.device,
            full_kwargs={**common, "reported_bytes": share.get(types.tokens, 0), "first_layer": first(types.tokens)}
            if full_ids else {**common, "reported_bytes": 0},
            swa_kwargs={**common, "reported_bytes": share[swa], "first_layer": first(swa)},
        )
        pool.register_mapping(allocator.full_to_swa_index_mapping)
    else:
        pool = JengaMHAPool(jenga=jenga, type_name=types.tokens, reported_bytes=share[types.tokens],
                            first_layer=first(types.tokens), dtype=target_dtype, layer_num=len(full_ids),
                            start_layer=info.start_layer, end_layer=info.end_layer, **common)
    config = kvc.memory_pool_config
    logger.info("Jenga draft pool: %s (layers after the target's in each type's rows)",
                ", ".join(f"{name}: {n} layers" for name, n in jenga.draft_layers.items()))
    return _sgl.KVCacheConfigResult(
        max_total_num_tokens=config.max_total_num_tokens, max_running_requests=config.max_running_requests,
        full_max_total_num_tokens=config.full_max_total_num_tokens,
        swa_max_total_num_tokens=config.swa_max_total_num_tokens,
        req_to_token_pool=kvc.req_to_token_pool, token_to_kv_pool=pool, token_to_kv_pool_allocator=allocator,
        memory_pool_config=config,
    )


def draft_reported_bytes(jenga: JengaBuffer) -> dict[str, int]:
    """The draft layers' share of each type's reported bytes (`_reported_bytes`), by layer count."""
    share = _reported_bytes(jenga)
    return {name: share[name] * n // jenga.stage.rows[name].layers for name, n in jenga.draft_layers.items()}


def _configure_state_model(kvc: Any, jenga: JengaBuffer, layers: ModelLayers, budget: int) -> Any:
    """Mamba / linear-attention hybrids: full-attention KV and recurrent states from one buffer. The
    running requests are capped by what fits (a state and a token each), not by a slot count."""
    full, state = jenga.types.tokens, state_type(jenga)
    full_cap = _largest(jenga.allocator.of(full).num_pages, lambda n: jenga.fits_empty({full: n, state: 1}))
    max_reqs = min(_requested_max_reqs(kvc, full_cap),
                   _largest(full_cap, lambda n: jenga.fits_empty({full: n, state: n})))
    req_to_token_pool, pools = build_state_pools(
        jenga, layers, kvc.device, max_reqs=max_reqs, max_context_len=req_to_token_context_len(kvc),
        overlap=not kvc.server_args.disable_overlap_schedule, start_layer=kvc.layer_info.start_layer,
    )
    config = _sgl.MemoryPoolConfig(max_total_num_tokens=full_cap, max_running_requests=max_reqs)
    logger.info(plan_line(jenga, budget, full_cap, 0) + f", up to {max_reqs} running requests")
    return _sgl.KVCacheConfigResult(
        max_total_num_tokens=full_cap, max_running_requests=max_reqs,
        full_max_total_num_tokens=None, swa_max_total_num_tokens=None,
        req_to_token_pool=req_to_token_pool, token_to_kv_pool=pools.pool,
        token_to_kv_pool_allocator=pools.allocator, memory_pool_config=config,
    )


def _requested_max_reqs(kvc: Any, token_capacity: int) -> int:
    """sglang's running-request limit for this capacity (--max-running-requests, else its estimate),
    before any Mamba slot cap."""
    requested = max_running_requests()
    if requested is not None:
        return max(1, min(requested // max(1, kvc.attn_dp_size), token_capacity // 2))
    estimated = max(min(int(token_capacity / kvc.model_config.context_len * 512), 4096), 2048)
    return max(1, min(estimated, token_capacity // 2))


def _largest(hi: int, fits: Any) -> int:
    """Largest n in [0, hi] with fits(n) (fits is monotone)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


class Pools(NamedTuple):
    """What sglang's scheduler gets for the KV cache: its pool (`token_to_kv_pool`) and token allocator."""

    pool: Any
    allocator: Any


def _common(layers: ModelLayers, device: str) -> dict[str, Any]:
    return {"head_num": layers.kv_heads, "head_dim": layers.head_dim, "v_head_dim": layers.head_dim,
            "device": device, "enable_memory_saver": False}


def _reported_bytes(jenga: JengaBuffer) -> dict[str, int]:
    """Each type's share of the buffer as sglang reports KV bytes, by token bytes (the views overlap)."""
    total = sum(t.token_bytes for t in jenga.layout.types)
    return {t.name: jenga.nbytes * t.token_bytes // total for t in jenga.layout.types}


def _tokens_pools(jenga: JengaBuffer, layers: ModelLayers, device: str, layer_range: tuple[int, int | None]) -> Pools:
    """One attention type: sglang's MHA pool and token allocator."""
    start, end = layer_range
    pool = JengaMHAPool(jenga=jenga, type_name=jenga.types.tokens, reported_bytes=jenga.nbytes, dtype=layers.dtype,
                        layer_num=len(layers.layer_ids(Role.TOKENS)), start_layer=start, end_layer=end,
                        **_common(layers, device))
    return Pools(pool, JengaTokenAllocator(jenga, pool, layers.dtype, device))


def _paired_pools(jenga: JengaBuffer, layers: ModelLayers, device: str, layer_range: tuple[int, int | None]) -> Pools:
    """Tokens + paired types: sglang's SWA pool and SWA allocator."""
    share, common = _reported_bytes(jenga), _common(layers, device)
    pool = JengaSWAKVPool(
        jenga=jenga, dtype=layers.dtype, head_num=layers.kv_heads, head_dim=layers.head_dim,
        swa_attention_layer_ids=layers.layer_ids(Role.PAIRED), full_attention_layer_ids=layers.layer_ids(Role.TOKENS),
        device=device,
        full_kwargs={**common, "reported_bytes": share[jenga.types.tokens]},
        swa_kwargs={**common, "reported_bytes": share[cast("str", jenga.types.paired)]},
    )
    return Pools(pool, JengaSWAAllocator(jenga, pool, layers.dtype, device))


def _encoder_pools(jenga: JengaBuffer, layers: ModelLayers, device: str,
                   layer_range: tuple[int, int | None]) -> Pools:
    """Tokens + encoder types: a pool over both, and the encoder-decoder allocator."""
    ids = {jenga.types.tokens: layers.layer_ids(Role.TOKENS),
           cast("str", jenga.types.encoder): layers.layer_ids(Role.ENCODER)}
    pool = JengaTypedKVPool(jenga=jenga, dtype=layers.dtype, common=_common(layers, device),
                            reported_bytes=_reported_bytes(jenga), layer_ids=ids)
    return Pools(pool, JengaEncoderDecoderAllocator(jenga, pool, layers.dtype, device))


# The sglang pieces of a model without a state type, by the role of its type besides the tokens type.
POOLS: dict[Role | None, Callable[[JengaBuffer, ModelLayers, str, tuple[int, int | None]], Pools]] = {
    None: _tokens_pools,
    Role.PAIRED: _paired_pools,
    Role.ENCODER: _encoder_pools,
}


def build_pools(jenga: JengaBuffer, layers: ModelLayers, device: str,
                layer_range: tuple[int, int | None] = (0, None)) -> Pools:
    """The KV pool and token allocator over `jenga` for a model without a state type (`POOLS`);
    `layer_range` is the pipeline stage's (start, end) layers."""
    return POOLS[jenga.types.second](jenga, layers, device, layer_range)


def build_state_pools(jenga: JengaBuffer, layers: ModelLayers, device: str, *, max_reqs: int, max_context_len: int,
                      overlap: bool, start_layer: int = 0) -> tuple[Any, Pools]:
    """A model with a state type: sglang's hybrid req_to_token pool (its state pool over `jenga`), the hybrid
    linear KV pool over the tokens type, and the token allocator."""
    req_to_token_pool = JengaHybridReqToTokenPool(
        jenga=jenga, size=max_reqs, mamba_spec_state_size=max_reqs, max_context_len=max_context_len, device=device,
        enable_memory_saver=False, cache_params=layers.mamba_params, mamba_layer_ids=layers.layer_ids(Role.STATE),
        enable_mamba_extra_buffer=False, enable_overlap_schedule=overlap, start_layer=start_layer,
    )
    full_ids = layers.layer_ids(Role.TOKENS)
    full_pool = JengaMHAPool(jenga=jenga, type_name=jenga.types.tokens, reported_bytes=jenga.nbytes,
                             dtype=layers.dtype, layer_num=len(full_ids), **_common(layers, device))
    pool = JengaHybridLinearKVPool(
        size=full_pool.size, dtype=layers.dtype, page_size=1, head_num=layers.kv_heads, head_dim=layers.head_dim,
        full_attention_layer_ids=full_ids, device=device, mamba_pool=req_to_token_pool.mamba_pool,
        start_layer=start_layer, full_kv_pool=full_pool,
    )
    return req_to_token_pool, Pools(pool, JengaStateTokenAllocator(jenga, pool, layers.dtype, device))


def _capacities(jenga: JengaBuffer) -> tuple[int, int]:
    """(full, swa) token capacities to report: the most tokens-type tokens the pool holds while one request
    keeps its window of paired-type tokens (window + 1 tokens span ceil((window + 1) / P) + 1 pages at most),
    and the paired type's slots."""
    full, swa, P = jenga.types.tokens, jenga.types.paired, jenga.page_size
    full_all = jenga.allocator.of(full).num_pages
    if swa is None:
        return full_all * P, 0
    window = ceil_div((jenga.types.window_tokens or 0) + 1, P) + (P > 1)
    return _largest(full_all, lambda n: jenga.fits_empty({full: n, swa: min(n, window)})) * P, \
        jenga.allocator.of(swa).num_pages * P


def plan_line(jenga: JengaBuffer, budget: int, full_cap: int, swa_cap: int) -> str:
    """The start-up log line: large-page bytes, small pages per large page, capacities, padding."""
    layout = jenga.layout
    per_type = ", ".join(
        f"{t.name}: {t.pages_per_large} pages/large x {t.page_bytes} B ({t.num_layers} layers, "
        f"padding {t.padding_bytes_per_page} B/page)" for t in layout.types
    )
    caps = f"capacity {full_cap} full-attention tokens" + (f", {swa_cap} sliding-window tokens" if swa_cap else "")
    stage = "" if jenga.stage.large_page_bytes == layout.large_page_bytes else (
        " (this pipeline stage: " + ", ".join(f"{name} {r.layers} layers in {r.stride} B rows"
                                              for name, r in jenga.stage.rows.items())
        + f", large pages of {jenga.stage.large_page_bytes} B)")
    return (f"Jenga plan: budget {budget} B, {jenga.num_large_pages} large pages of {layout.large_page_bytes} B "
            f"(+1 reserved); {per_type}; {caps}{stage}")
