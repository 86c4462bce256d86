"""sglang plugin entry point (`sglang.srt.plugins` group): `--memory-manager jenga`.

`register()` runs in every sglang process (launcher, scheduler, detokenizer, Engine) via
`load_plugins()`. It only registers hooks; nothing heavy is imported until a hook fires.

How the choice travels: `--memory-manager jenga` sets sglang's own `--radix-cache-backend jenga`
field, which is pickled to every scheduler process. Jenga is active wherever that field says
"jenga", so the offline Engine selects it with `sgl.Engine(..., radix_cache_backend="jenga")`.

Hooks (targets are listed in adapter/compat.py):
  ServerArgs.add_cli_args    AFTER   adds --memory-manager {default,jenga}
  ServerArgs.from_cli_args   AFTER   checks flag combinations, sets radix_cache_backend
  KVCacheConfigurator.configure AROUND  builds jenga's buffer, pools and allocator
  model override providers,  AROUND  under jenga, Gemma-2/3 are hybrid sliding-window models (sglang
  hybrid SWA model checks              runs them with full-length KV in every layer)
  torch_native SDPA reads    AROUND  sglang bug workaround (adapter/torch_native_fix.py)
  internal state memory      AFTER   adds live jenga stats to /server_info
  alloc_for_extend,          AROUND  tells jenga whose slots the next flat allocation is (each request
  alloc_for_decode                     its own placement owner) and which extend tokens are encoder tokens
  ScheduleBatch.maybe_evict_swa AROUND  a decode step's window release tests only the requests that can be
                                       due (JengaRadixCache.release_windows)
  dummy weight init          AROUND  only with SGLANG_JENGA_DUMMY_WEIGHT_RANGE set (test aid, below)
  scheduler steps and        AROUND  only with SGLANG_JENGA_TIME_SCHEDULER=1: CPU time per batch, any
  memory-manager calls                 manager (adapter/timing.py, bench/scheduler_cost.py)
  Mamba2 / GDN kernels       REPLACE CPU runs only (cpu_runtime/mamba/hooks.py)
  ServerArgs.resolve_once,   AFTER/  CPU runs only: --attention-backend triton runs under Triton's
  Triton SWA decode window,  AROUND    interpreter, with two sglang bugs fixed: the sliding window's last key
  speculative tree mask                and the verify tree mask (cpu_runtime/triton_route.py)
and the radix cache backend "jenga" (adapter/tree_cache.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from sglang_jenga.adapter import compat, timing

NAME = "jenga"
logger = logging.getLogger(__name__)
# Test aid: sglang's --load-format dummy draws weights from [-1e-3, 1e-3], which makes a tiny model's
# next-token distribution exactly uniform (every logit rounds to the same bf16 value), so outputs do
# not depend on the KV cache at all. With this variable set to r, dummy weights come from [-r, r]
# (same per-parameter seeds), so greedy outputs and logprobs depend on every cached token.
DUMMY_RANGE_ENV = "SGLANG_JENGA_DUMMY_WEIGHT_RANGE"
MANAGERS = ("default", NAME)
_registered = False


def register() -> None:
    """Register the hooks and the radix cache backend. Idempotent."""
    global _registered
    if _registered:
        return
    _registered = True
    registry, kind = compat.hook_registry()
    registry.register(compat.ADD_CLI_ARGS, _add_cli_args, kind.AFTER)
    registry.register(compat.FROM_CLI_ARGS, _from_cli_args, kind.AFTER)
    registry.register(compat.KV_CACHE_CONFIGURE, _configure, kind.AROUND)
    registry.register(compat.MODEL_OVERRIDE_INVOKE, _invoke_override, kind.AROUND)
    registry.register(compat.IS_HYBRID_SWA_MODEL, _is_hybrid_swa_model, kind.AROUND)
    registry.register(compat.HYBRID_LAYER_IDS, _hybrid_layer_ids, kind.AROUND)
    registry.register(compat.INTERNAL_STATE_MEMORY, _add_stats, kind.AFTER)
    registry.register(compat.ALLOC_FOR_EXTEND, _alloc_for_extend, kind.AROUND)
    registry.register(compat.ALLOC_FOR_DECODE, _alloc_for_decode, kind.AROUND)
    registry.register(compat.MAYBE_EVICT_SWA, _maybe_evict_swa, kind.AROUND)
    from sglang_jenga.adapter.torch_native_fix import translate_swa_reads

    registry.register(compat.TORCH_NATIVE_EXTEND, translate_swa_reads, kind.AROUND)
    registry.register(compat.TORCH_NATIVE_DECODE, translate_swa_reads, kind.AROUND)
    from sglang_jenga.cpu_runtime.mamba.hooks import register_cpu_mamba_hooks

    register_cpu_mamba_hooks()  # plain-torch Mamba2 / gated-delta-net kernels, CPU runs only
    from sglang_jenga.cpu_runtime.triton_route import register_triton_route_hooks

    register_triton_route_hooks()  # --attention-backend triton under Triton's interpreter, CPU runs only
    if os.environ.get(DUMMY_RANGE_ENV):
        registry.register(compat.DUMMY_WEIGHTS, _dummy_weights, kind.AROUND)
    if timing.enabled():
        registry.register(compat.SCHEDULER_NEXT_BATCH, timing.next_batch, kind.AROUND)
        registry.register(compat.SCHEDULER_PROCESS_RESULT, timing.process_result, kind.AROUND)
        for name, target in compat.MEMORY_MANAGER_CALLS.items():
            registry.register(target, timing.timed(name), kind.AROUND)
    compat.register_radix_cache_backend(NAME, _make_tree_cache)


def is_active(server_args: Any = None) -> bool:
    """Whether this process serves with jenga (its radix cache backend is "jenga")."""
    if server_args is not None:
        return getattr(server_args, "radix_cache_backend", None) == NAME
    return compat.radix_cache_backend() == NAME


# -- CLI ------------------------------------------------------------------------------------------
def _add_cli_args(result: Any, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-manager", choices=MANAGERS, default="default",
        help="KV memory manager. 'jenga': one LCM-paged buffer shared by every layer type "
             "(sliding window, full attention, ...), typed radix tree, prefix-subset eviction "
             "(sglang_jenga). Same as --radix-cache-backend jenga.",
    )


def _from_cli_args(server_args: Any, cls: Any, args: argparse.Namespace) -> None:
    if getattr(args, "memory_manager", "default") != NAME:
        return
    problems = unsupported_flags(args)
    if problems:
        sys.exit("error: --memory-manager jenga cannot be combined with " + "; ".join(problems))
    server_args.radix_cache_backend = NAME


def unsupported_flags(args: Any) -> list[str]:
    """The flag combinations jenga rejects at start-up, each naming what to change."""
    checks = [
        (getattr(args, "enable_unified_memory", False),
         "--enable-unified-memory (both replace sglang's pools; drop one)"),
        (getattr(args, "enable_hierarchical_cache", False),
         "--enable-hierarchical-cache (hierarchical cache is not supported; drop it)"),
        (getattr(args, "radix_cache_backend", None) not in (None, NAME),
         f"--radix-cache-backend {getattr(args, 'radix_cache_backend', None)} (jenga is the radix cache; drop it)"),
        (getattr(args, "disaggregation_mode", "null") not in (None, "null"),
         f"--disaggregation-mode {getattr(args, 'disaggregation_mode', None)} (PD under jenga is not proven end "
         "to end: its pools describe their buffers to sglang's KV transfer, tested between two pools, but not "
         "between two servers nor the decode side's cache and retraction; drop it or use --memory-manager default)"),
        *_speculative_problems(args),
        (getattr(args, "mamba_radix_cache_strategy", None) == "extra_buffer",
         "--mamba-radix-cache-strategy extra_buffer (jenga keeps Mamba states at checkpoints; use no_buffer)"),
        (getattr(args, "enable_int8_mamba_checkpoint", False),
         "--enable-int8-mamba-checkpoint (jenga keeps checkpoints in its own buffer; drop it)"),
        (getattr(args, "enable_linear_replayssm", False) or getattr(args, "enable_linear_replayssm_spec", False),
         "--enable-linear-replayssm (not supported; drop it)"),
        (getattr(args, "kv_cache_dtype", "auto") not in ("auto", "bfloat16", "bf16", "float16", "fp16",
                                                           "float32"),
         f"--kv-cache-dtype {getattr(args, 'kv_cache_dtype', None)} (use auto, bfloat16 or float16)"),
    ]
    return [message for bad, message in checks if bad]


def _speculative_problems(args: Any) -> list[tuple[bool, str]]:
    """Speculative decoding flags jenga rejects (compat.SPEC_SUPPORTED: a draft model's KV goes into jenga's
    rows, NGRAM has none)."""
    algo = getattr(args, "speculative_algorithm", None)
    if algo is None:
        return []
    algo = str(algo).upper()
    supported = ", ".join(compat.SPEC_SUPPORTED)
    return [
        (algo not in compat.SPEC_SUPPORTED,
         f"--speculative-algorithm {algo} (jenga serves {supported}; use one of them or --memory-manager default)"),
        (algo in compat.SPEC_WITH_DRAFT_KV and not getattr(args, "speculative_draft_model_path", None),
         f"--speculative-algorithm {algo} without --speculative-draft-model-path (a draft built from the target's "
         "own MTP layers is not supported; give a draft model)"),
        (getattr(args, "speculative_draft_kv_cache_dtype", None) is not None,
         "--speculative-draft-kv-cache-dtype (jenga stores draft KV in the target's rows, in its dtype; drop it)"),
        (bool(getattr(args, "enable_multi_layer_eagle", False)),
         "--enable-multi-layer-eagle (multi-layer EAGLE drafts are not supported under jenga; drop it)"),
    ]


# -- scheduler-side hooks -------------------------------------------------------------------------
def _configure(original: Any, configurator: Any, *, pre_model_load_memory: int) -> Any:
    if not is_active():
        return original(configurator, pre_model_load_memory=pre_model_load_memory)
    compat.check_version()
    from sglang_jenga.adapter.build import UnsupportedModelError, configure

    problems = unsupported_flags(configurator.server_args)  # the Engine API skips the CLI check
    if problems:
        raise UnsupportedModelError("--memory-manager jenga cannot be combined with " + "; ".join(problems))

    return configure(configurator, pre_model_load_memory)


def _invoke_override(original: Any, fn: Any, server_args: Any, hf_config: Any) -> Any:
    """Under jenga, drop the provider that turns hybrid SWA memory off for Gemma-2/3: jenga gives
    their sliding-window layers window-sized memory."""
    if getattr(fn, "__name__", "") == compat.GEMMA_SWA_OVERRIDE_FN and is_active(server_args):
        return {}
    return original(fn, server_args, hf_config)


def _is_gemma(architectures: Any) -> bool:
    return any(a in compat.GEMMA_ARCHITECTURES for a in architectures or ())


def _is_hybrid_swa_model(original: Any, architectures: Any, hf_text_config: Any = None) -> Any:
    if _is_gemma(architectures) and is_active():
        return True
    return original(architectures, hf_text_config)


def _hybrid_layer_ids(original: Any, architectures: Any, hf_text_config: Any) -> Any:
    if not (_is_gemma(architectures) and is_active()):
        return original(architectures, hf_text_config)
    layer_types = list(hf_text_config.layer_types)[: hf_text_config.num_hidden_layers]
    swa = [i for i, kind in enumerate(layer_types) if kind == "sliding_attention"]
    return swa, [i for i, kind in enumerate(layer_types) if kind != "sliding_attention"]


def _add_stats(result: Any, controller: Any, state: dict[str, Any]) -> None:
    scheduler = controller.scheduler
    if timing.enabled():
        state["scheduler_timing"] = timing.snapshot()
    jenga = getattr(scheduler.token_to_kv_pool_allocator, "jenga", None)
    if jenga is not None:
        from sglang_jenga.adapter.compat import parallel_ranks
        from sglang_jenga.adapter.stats import decisions_digest, jenga_stats

        state[NAME] = stats = jenga_stats(jenga, scheduler.tree_cache)
        # Every TP rank and pipeline stage answers the request, only one answer is returned: the log shows all.
        tp_rank, dp_rank, pp_rank = parallel_ranks()
        logger.info("jenga decisions tp_rank=%d dp_rank=%d pp_rank=%d digest=%s", tp_rank, dp_rank, pp_rank,
                    decisions_digest(stats))


def _dummy_weights(original: Any, model: Any, low: float = -1e-3, high: float = 1e-3, seed: int = 1234) -> Any:
    r = float(os.environ[DUMMY_RANGE_ENV])
    return original(model, low=-r, high=r, seed=seed)


def _alloc_for_extend(original: Any, batch: Any) -> Any:
    """Before sglang allocates the batch's extend tokens in one flat call, tell jenga whose they are (each
    request its own placement owner) and, for encoder-decoder models, how many of each request's tokens
    are encoder tokens. Rows are read when the slots are taken (sglang assigns them in between)."""
    jenga = _jenga_of(batch)
    if jenga is None:
        return original(batch)
    from sglang_jenga.adapter.buffer import PlannedAlloc

    cache = batch.tree_cache
    parts = []
    for req, extend_len in zip(batch.reqs, batch.extend_lens, strict=True):
        cache.note_request(req)
        enc = cache.encoder_len(req)
        cross = enc if req.prefix_len < enc else 0
        parts.append((req, cross, extend_len - cross, max(0, req.prefix_len - enc)))
    jenga.plan(lambda: [PlannedAlloc(r.kv.req_pool_idx, c, t, s) for r, c, t, s in parts])
    try:
        return original(batch)
    finally:
        jenga.plan(None)


def _alloc_for_decode(original: Any, batch: Any, token_per_req: int) -> Any:
    """A decode step: `token_per_req` slots for each request, placed with its other pages."""
    jenga = _jenga_of(batch)
    if jenga is None:
        return original(batch, token_per_req)
    from sglang_jenga.adapter.buffer import PlannedAlloc

    enc = batch.tree_cache.encoder_len
    jenga.plan(lambda: [PlannedAlloc(r.kv.req_pool_idx, 0, token_per_req, r.kv.kv_allocated_len - enc(r))
                        for r in batch.reqs],
               (lambda: [r.kv.req_pool_idx for r in batch.reqs]) if token_per_req == 1 else None)
    try:
        return original(batch, token_per_req)
    finally:
        jenga.plan(None)


def _maybe_evict_swa(original: Any, batch: Any) -> Any:
    """A decode step's window release: sglang's test and release for the requests that can be due only
    (JengaRadixCache.release_windows); sglang's loop where it does more, or without jenga."""
    release = getattr(batch.tree_cache, "release_windows", None)
    if release is None or not release(batch):
        return original(batch)
    return None


def _jenga_of(batch: Any) -> Any:
    return getattr(batch.tree_cache.token_to_kv_pool_allocator, "jenga", None)


def _make_tree_cache(ctx: Any) -> Any:
    jenga = getattr(ctx.params.token_to_kv_pool_allocator, "jenga", None)
    if jenga is None:
        raise ValueError("--radix-cache-backend jenga needs the jenga pools; start with --memory-manager jenga")
    from sglang_jenga.adapter.tree_cache import JengaRadixCache

    return JengaRadixCache(ctx.params, jenga)
