"""The one module that names sglang internals. Pinned to sglang 0.5.23.

Everything else in sglang_jenga reaches sglang through the names below, so a new sglang release
is one file to check: the hook targets (dotted paths patched by the plugin), the classes the
adapter subclasses because sglang type-checks them, and the helpers it calls.
"""

from __future__ import annotations

import functools
import importlib.metadata
import types
from collections.abc import Callable
from typing import Any, NamedTuple

SGLANG_VERSION = "0.5.23"

# --- hook targets (dotted paths for sglang.srt.plugins.hook_registry.HookRegistry) ---------------
ADD_CLI_ARGS = "sglang.srt.server_args.ServerArgs.add_cli_args"
FROM_CLI_ARGS = "sglang.srt.server_args.ServerArgs.from_cli_args"
KV_CACHE_CONFIGURE = "sglang.srt.mem_cache.kv_cache_configurator.KVCacheConfigurator.configure"
IS_HYBRID_SWA_MODEL = "sglang.srt.configs.model_config.is_hybrid_swa_model"
HYBRID_LAYER_IDS = "sglang.srt.configs.model_config.get_hybrid_layer_ids"
MODEL_OVERRIDE_INVOKE = "sglang.srt.arg_groups.model_override_base._invoke_provider"
GEMMA_SWA_OVERRIDE_FN = "_gemma2_gemma3_overrides"  # the provider that turns hybrid SWA memory off
# Architectures sglang runs without hybrid SWA memory (that provider's registrations).
GEMMA_ARCHITECTURES = frozenset({
    "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
    "Gemma3nForCausalLM", "Gemma3nForConditionalGeneration",
})
TORCH_NATIVE_EXTEND = (
    "sglang.srt.layers.attention.torch_native_backend.TorchNativeAttnBackend._run_sdpa_forward_extend"
)
TORCH_NATIVE_DECODE = (
    "sglang.srt.layers.attention.torch_native_backend.TorchNativeAttnBackend._run_sdpa_forward_decode"
)
# The Triton attention route on CPU (cpu_runtime/triton_route.py).
SERVER_ARGS_RESOLVE = "sglang.srt.server_args.ServerArgs.resolve_once"
TRITON_INIT_FORWARD_METADATA = "sglang.srt.layers.attention.triton_backend.TritonAttnBackend.init_forward_metadata"
TRITON_SLIDING_WINDOW_BUFFER = "sglang.srt.layers.attention.triton_backend.update_sliding_window_buffer"
TREE_MASK_MODE = "sglang.srt.speculative.eagle_utils.default_tree_mask_mode"
NGRAM_WORKER_INIT = "sglang.srt.speculative.ngram_worker.NGRAMWorker.__init__"
ALLOC_FOR_EXTEND = "sglang.srt.mem_cache.allocation.alloc_for_extend"
ALLOC_FOR_DECODE = "sglang.srt.mem_cache.allocation.alloc_for_decode"
MAYBE_EVICT_SWA = "sglang.srt.managers.schedule_batch.ScheduleBatch.maybe_evict_swa"
# The scheduler steps around each forward and the memory-manager entry points in them (adapter/timing.py).
SCHEDULER_NEXT_BATCH = "sglang.srt.managers.scheduler.Scheduler.get_next_batch_to_run"
SCHEDULER_PROCESS_RESULT = "sglang.srt.managers.scheduler.Scheduler.process_batch_result"
MEMORY_MANAGER_CALLS = {
    "match": "sglang.srt.mem_cache.common.match_kv_cache",
    "alloc_extend": ALLOC_FOR_EXTEND,
    "alloc_decode": ALLOC_FOR_DECODE,
    "checkpoint": "sglang.srt.mem_cache.common.checkpoint_kv_cache",
    "release": "sglang.srt.mem_cache.common.release_kv_cache",
    "release_window": MAYBE_EVICT_SWA,
}
DUMMY_WEIGHTS = "sglang.srt.model_loader.weight_utils.initialize_dummy_weights"
INTERNAL_STATE_MEMORY = (
    "sglang.srt.managers.scheduler_components.internal_state.SchedulerInternalStateController._add_memory_usage"
)


# --- CPU runtime hook targets (sglang_jenga/cpu_runtime/mamba/hooks.py) -------------------------------
MAMBA_MIXER_MODULE = "sglang.srt.layers.attention.mamba.mamba"
MAMBA_MIXER_INIT = MAMBA_MIXER_MODULE + ".MambaMixer2.__init__"
MAMBA_CHUNK_SCAN = "sglang.kernels.ops.mamba.triton_ops.ssd_combined.mamba_chunk_scan_combined"
MAMBA_STATE_UPDATE = "sglang.kernels.ops.mamba.triton_ops.mamba_ssm.selective_state_update"
GATED_RMS_NORM = "sglang.kernels.ops.attention.fla.fused_norm_gate.rms_norm_gated"
FUSED_GATE_SIGMOID_MUL = "sglang.kernels.ops.elementwise.elementwise._launch_fused_gate_sigmoid_mul"


def check_version() -> None:
    """Raise RuntimeError naming the installed version when it is not the pinned one."""
    installed = importlib.metadata.version("sglang")
    if installed != SGLANG_VERSION:
        raise RuntimeError(
            f"sglang_jenga is built for sglang=={SGLANG_VERSION}, found sglang=={installed}; "
            f"install sglang=={SGLANG_VERSION} or run without --memory-manager jenga"
        )


@functools.cache
def sglang_classes() -> Any:
    """sglang's classes the adapter subclasses or builds, imported on first use (they pull in torch)."""
    from sglang.srt.mem_cache import base_prefix_cache as bpc
    from sglang.srt.mem_cache.allocator.base import BaseTokenToKVPoolAllocator
    from sglang.srt.mem_cache.allocator.swa import SWATokenToKVPoolAllocator
    from sglang.srt.mem_cache.allocator.token import TokenToKVPoolAllocator
    from sglang.srt.mem_cache.kv_cache_configurator import KVCacheConfigResult
    from sglang.srt.mem_cache.layout.token_major import build_mamba_entry_views, mamba_entry_bytes
    from sglang.srt.mem_cache.memory_pool import (
        HybridLinearKVPool,
        HybridReqToTokenPool,
        KVCache,
        MambaPool,
        MHATokenToKVPool,
    )
    from sglang.srt.mem_cache.prefill_budget import PrefillBudget, SharedSWAPrefillBudget
    from sglang.srt.mem_cache.swa_memory_pool import SWAKVPool
    from sglang.srt.mem_cache.unified_cache.components import ComponentType
    from sglang.srt.model_executor.pool_configurator import MemoryPoolConfig

    return types.SimpleNamespace(
        BaseTokenToKVPoolAllocator=BaseTokenToKVPoolAllocator,
        TokenToKVPoolAllocator=TokenToKVPoolAllocator,
        SWATokenToKVPoolAllocator=SWATokenToKVPoolAllocator,
        MHATokenToKVPool=MHATokenToKVPool,
        KVCache=KVCache,
        SWAKVPool=SWAKVPool,
        SharedSWAPrefillBudget=SharedSWAPrefillBudget,
        PrefillBudget=PrefillBudget,
        MambaPool=MambaPool,
        HybridReqToTokenPool=HybridReqToTokenPool,
        HybridLinearKVPool=HybridLinearKVPool,
        mamba_entry_bytes=mamba_entry_bytes,
        build_mamba_entry_views=build_mamba_entry_views,
        KVCacheConfigResult=KVCacheConfigResult,
        MemoryPoolConfig=MemoryPoolConfig,
        ComponentType=ComponentType,
        BasePrefixCache=bpc.BasePrefixCache,
        MatchResult=bpc.MatchResult,
        EvictResult=bpc.EvictResult,
        EvictParams=bpc.EvictParams,
        IncLockRefResult=bpc.IncLockRefResult,
        DecLockRefResult=bpc.DecLockRefResult,
        TreeLock=bpc.TreeLock,
    )


def register_radix_cache_backend(name: str, factory: Any) -> None:
    from sglang.srt.mem_cache.registry import get_radix_cache_factory
    from sglang.srt.mem_cache.registry import register_radix_cache_backend as register

    if get_radix_cache_factory(name) is None:
        register(name, factory)


def hook_registry() -> tuple[Any, Any]:
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    return HookRegistry, HookType


def radix_cache_backend() -> str | None:
    """This process's --radix-cache-backend: the resolved value once the runtime context is published,
    else the raw server args; None before either exists (e.g. in the launcher before parsing)."""
    from sglang.srt import runtime_context

    try:
        return runtime_context.get_memory().radix_cache_backend
    except Exception:  # noqa: BLE001 - not published in this process yet
        pass
    try:
        return runtime_context.get_server_args().radix_cache_backend
    except Exception:  # noqa: BLE001
        return None


def server_args() -> Any:
    """This process's resolved ServerArgs (None before the runtime context is published)."""
    from sglang.srt import runtime_context

    try:
        return runtime_context.get_server_args()
    except Exception:  # noqa: BLE001 - not published in this process yet
        return None


def full_tree_mask(sglang_module: Any) -> Any:
    """sglang's full (prefix + draft) tree-mask mode, TreeMaskMode.FULL_MASK."""
    return sglang_module.TreeMaskMode.FULL_MASK


def ngram_verify_reads_full_mask() -> None:
    """Make sglang's NGRAM worker build the full (prefix + draft) verify mask: it builds the draft-only one on
    every CPU (`ngram_worker._is_cpu`, a module global read at each verify)."""
    from sglang.srt.speculative import ngram_worker

    ngram_worker._is_cpu = False


def parallel_sizes() -> tuple[int, int]:
    """(attention TP size, attention DCP size) of this process."""
    from sglang.srt.runtime_context import get_parallel

    p = get_parallel()
    return p.attn_tp_size, p.attn_dcp_size


def pipeline_min(value: int) -> int:
    """The smallest `value` of all pipeline stages (sglang's own step for its token capacity,
    `KVCacheConfigurator._apply_token_constraints`); `value` itself without pipeline parallelism."""
    import torch
    from sglang.srt.runtime_context import get_parallel

    p = get_parallel()
    if p.pp_size <= 1:
        return value
    t = torch.tensor(value, dtype=torch.int64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN, group=p.world_group.cpu_group)
    return int(t.item())


def pipeline_stages(num_layers: int) -> tuple[range, ...]:
    """The layers of every pipeline stage as sglang's models split them (`get_pp_indices`); () without
    pipeline parallelism."""
    from sglang.srt.distributed.utils import get_pp_indices
    from sglang.srt.runtime_context import get_parallel

    size = get_parallel().pp_size
    return tuple(range(*get_pp_indices(num_layers, r, size)) for r in range(size)) if size > 1 else ()


def parallel_ranks() -> tuple[int, int, int]:
    """(TP rank, DP rank, PP rank) of this process (DP rank 0 without data parallelism)."""
    from sglang.srt.runtime_context import get_parallel

    p = get_parallel()
    return p.tp_rank, p.dp_rank or 0, p.pp_rank


def schedule_args() -> tuple[int | None, float]:
    """(--max-total-tokens, --swa-full-tokens-ratio) as resolved in this process."""
    from sglang.srt.runtime_context import get_schedule

    s = get_schedule()
    return s.max_total_tokens, s.swa_full_tokens_ratio


def max_running_requests() -> int | None:
    """--max-running-requests as resolved in this process."""
    from sglang.srt.runtime_context import get_schedule

    return get_schedule().max_running_requests


def mamba_args() -> tuple[int | None, bool, bool]:
    """(--max-mamba-cache-size, whether the extra_buffer radix strategy is on, whether int8 Mamba
    checkpoints or ReplaySSM rings are on) as resolved in this process."""
    from sglang.srt.runtime_context import get_exec, get_schedule

    m = get_exec().mamba
    other = bool(getattr(m, "enable_int8_mamba_checkpoint", False) or m.enable_linear_replayssm
                 or m.enable_linear_replayssm_spec)
    return get_schedule().max_mamba_cache_size, bool(m.enable_mamba_extra_buffer), other


def req_to_token_context_len(kvc: Any) -> int:
    """Rows of sglang's req_to_token table (context length plus sglang's extra room)."""
    from sglang.srt.mem_cache.kv_cache_configurator import get_req_to_token_extra_context_len

    return int(kvc.model_config.context_len + get_req_to_token_extra_context_len())


def profile_available_bytes(kvc: Any, pre_model_load_memory: int) -> int:
    """sglang's KV byte budget from --mem-fraction-static (KVCacheConfigurator, private)."""
    return int(kvc._profile_available_bytes(pre_model_load_memory))


def build_req_to_token_pool(kvc: Any, max_num_reqs: int) -> Any:
    """sglang's req_to_token pool for this configurator (KVCacheConfigurator, private)."""
    return kvc._build_req_to_token_pool(max_num_reqs=max_num_reqs)


# Speculative decoding: the algorithms whose draft KV jenga stores (a draft model at
# --speculative-draft-model-path) and NGRAM (no draft KV). Names as sglang's --speculative-algorithm takes them.
SPEC_WITH_DRAFT_KV = ("EAGLE", "EAGLE3", "STANDALONE")
SPEC_SUPPORTED = (*SPEC_WITH_DRAFT_KV, "NGRAM")


def draft_layer_counts(kvc: Any) -> tuple[int, int] | None:
    """(full-attention, sliding-window) layers of the draft model whose KV sglang sizes together with the
    target's (`pool_configurator`'s EAGLE / STANDALONE draft layers), read on the target's configurator; None
    without such a draft (no speculation, NGRAM, the draft worker's own configurator)."""
    spec = kvc.spec_algorithm
    if kvc.is_draft_worker or not (spec.is_eagle() or spec.is_standalone()):
        return None
    aux = kvc.spec_aux_config
    n = int(aux.eagle_draft_num_layers or 0)
    if n <= 0:
        return None
    swa = min(int(aux.eagle_draft_swa_num_layers or 0), n)
    return n - swa, swa


def draft_model_config(kvc: Any) -> Any:
    """sglang's ModelConfig of the draft model, as the target's configurator resolved it."""
    return kvc.spec_aux_config.draft_model_config


def swa_release_interval(cache: Any) -> int | None:
    """SGLANG_SWA_EVICTION_INTERVAL when `ScheduleBatch.maybe_evict_swa`, for a plain decode batch of `cache`'s,
    only releases each due request's out-of-window SWA slots (`swa_release_rule`), None when it does more or
    tests on another basis: auxiliary windows, SGLANG_OPT_RELEASE_PREFILL_SWA (a prefix-lock release each step),
    ROCm's MegaMoE forward cadence (`_swa_eviction_trigger`). Read once per server, as environment settings."""
    from sglang.srt.environ import envs
    from sglang.srt.managers import schedule_batch

    if (schedule_batch._is_hip or cache.supports_auxiliary_swa()
            or (envs.SGLANG_OPT_RELEASE_PREFILL_SWA.get() and hasattr(cache, "release_swa_prefix_lock"))):
        return None
    return max(1, envs.SGLANG_SWA_EVICTION_INTERVAL.get())


def is_plain_decode(batch: Any) -> bool:
    """A decode batch without speculative decoding (`maybe_evict_swa`'s decode branch, one token each)."""
    spec = batch.spec_algorithm
    return bool(batch.forward_mode.is_decode()) and (spec is None or spec.is_none())


class SwaRelease(NamedTuple):
    """What `ScheduleBatch.maybe_evict_swa` does with each request of a plain decode batch (`swa_release_rule`):
    `due(req)` is its test, `release(req)` the release it then makes (the request's out-of-window SWA slots,
    through the tree cache's `evict_sliding_windows`), `cursor(req)` the request's SWA release cursor (its
    tokens below it released)."""

    due: Callable[[Any], bool]
    release: Callable[[Any], None]
    cursor: Callable[[Any], int]


def swa_release_rule(batch: Any, interval: int) -> SwaRelease:
    """sglang's per-request window release for the plain decode `batch` (where `swa_release_interval` gave
    `interval`)."""
    trigger = batch._swa_eviction_trigger(batch.tree_cache.swa_retain_window, interval)
    swa = sglang_classes().ComponentType.SWA

    def due(req: Any) -> bool:
        return bool(req.decode_batch_idx >= 1 and req.kv.holds_kv and trigger(req))

    def release(req: Any) -> None:
        batch._evict_swa(req, req.seqlen - 1, eviction_interval=1)

    return SwaRelease(due, release, lambda req: int(req.kv.get_evicted_seqlen(swa)))


# --- private members of sglang classes the adapter subclasses -------------------------------------
def swa_allocator_fields(allocator: Any, full_size: int, swa_size: int) -> None:
    """Set the private fields `SWATokenToKVPoolAllocator`'s own methods read (its __init__, which jenga's
    subclass does not run, sets them): the two sizes, and no per-request SWA ring."""
    allocator._size_full, allocator._size_swa = full_size, swa_size
    allocator._swa_req_ring, allocator._swa_ring_cost, allocator._req_to_token_pool = False, 0, None


class MHABufferHook:
    """Mixin for an `MHATokenToKVPool` subclass: its K/V buffers come from `create_buffers()` instead of
    sglang's allocation (`_create_buffers_normal`, private)."""

    def create_buffers(self) -> None:
        raise NotImplementedError

    def _create_buffers_normal(self) -> None:
        self.create_buffers()


class MambaPoolHook:
    """Mixin for a `HybridReqToTokenPool` subclass: `after_mamba_pool_init()` runs once sglang has built its
    state pool and slot allocator (`_init_mamba_pool`, private)."""

    def after_mamba_pool_init(self) -> None:
        raise NotImplementedError

    def _init_mamba_pool(self, *args: Any, **kwargs: Any) -> None:
        super()._init_mamba_pool(*args, **kwargs)  # type: ignore[misc]
        self.after_mamba_pool_init()


class PrefillBudgetHook:
    """Mixin for a `PrefillBudget` subclass: `available_and_evictable(tokens)` adjusts the token budget sglang
    computes (`_available_and_evictable`, private)."""

    def available_and_evictable(self, tokens: int) -> int:
        raise NotImplementedError

    def _available_and_evictable(self) -> int:
        return self.available_and_evictable(int(super()._available_and_evictable()))  # type: ignore[misc]
