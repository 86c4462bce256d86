"""sglang's Triton attention backend on a CPU machine: `--device cpu --attention-backend triton`.

sglang 0.5.23's Triton attention kernels run on CPU tensors under Triton's interpreter, which executes each
kernel in numpy (slow: ~0.1-0.25 s per token for a tiny model, but the same kernels a GPU runs). Two things
make that route work, both registered only on CPU runs (`SGLANG_USE_CPU_ENGINE=1`, no CUDA):

- `interpret_if_asked` (AFTER ServerArgs.resolve_once, which the launcher and the offline Engine run before
  they start the scheduler): when any attention backend is "triton", sets TRITON_INTERPRET=1 in the
  environment before sglang spawns its scheduler, so the scheduler's `@triton.jit` kernels are built as
  interpreted functions. An explicit TRITON_INTERPRET in the environment is left as it is.
- `window_with_current_token` (sglang bug): the Triton backend's decode step gathers the last
  `sliding_window_size` keys of a sliding-window layer, but sglang stores the window as a radius
  (`config.sliding_window - 1`: gemma3_causal.py, mellum.py, gemma2.py) and the decode kernel does not mask,
  so a decode query past the window attends one key too few (FlashInfer clamps at `sliding_window_size + 1`).
  Upstream: sgl-project/sglang PR #32087 (closed unmerged). During the decode metadata build of
  `TritonAttnBackend.init_forward_metadata` (`decode_metadata`), the window gathered is one key longer;
  extend, verify and draft paths are unchanged (their kernels mask per query).
- `full_verify_mask` (sglang bug): on a CPU machine sglang builds speculative decoding's draft-only
  (QLEN_ONLY) tree mask, meant for the intel_amx verify kernel (`eagle_utils.default_tree_mask_mode`; NGRAM:
  `ngram_worker._is_cpu`), but the Triton verify kernel (`extend_attention.py`) reads the full mask (prefix
  and draft columns per draft row): it reads past the smaller buffer, outputs differ from the first verify
  step on and change between runs. On the Triton route both build the full mask (what they build on a GPU).
  No upstream issue found (searched sglang's issues for the QLEN_ONLY CPU mask, 2026-12-03).

Inert off CPU: nothing is registered unless `on_cpu()`; the fixes only act in decode metadata builds and,
for the mask, when this process's attention backend is triton.
"""

from __future__ import annotations

import contextvars
import os
from typing import Any

from sglang_jenga.adapter import compat

INTERPRET_ENV = "TRITON_INTERPRET"
BACKEND_FIELDS = ("attention_backend", "prefill_attention_backend", "decode_attention_backend")
_in_decode_build: contextvars.ContextVar[bool] = contextvars.ContextVar("jenga_triton_decode", default=False)
_registered = False


def asks_for_triton(server_args: Any) -> bool:
    """Whether any attention backend of `server_args` is sglang's Triton backend."""
    return any(getattr(server_args, field, None) == "triton" for field in BACKEND_FIELDS)


def interpret_if_asked(result: Any, server_args: Any, *args: Any, **kwargs: Any) -> None:
    """AFTER ServerArgs.resolve_once: turn Triton's interpreter on for the processes sglang starts next."""
    if asks_for_triton(server_args):
        os.environ.setdefault(INTERPRET_ENV, "1")


def decode_metadata(original: Any, backend: Any, forward_batch: Any, *args: Any, **kwargs: Any) -> Any:
    """AROUND TritonAttnBackend.init_forward_metadata: mark decode builds for `window_with_current_token`."""
    if not forward_batch.forward_mode.is_decode_or_idle():
        return original(backend, forward_batch, *args, **kwargs)
    token = _in_decode_build.set(True)
    try:
        return original(backend, forward_batch, *args, **kwargs)
    finally:
        _in_decode_build.reset(token)


def window_with_current_token(original: Any, window_kv_indptr: Any, translator: Any, plan: Any,
                              req_pool_indices: Any, sliding_window_size: int, *args: Any, **kwargs: Any) -> Any:
    """AROUND triton_backend.update_sliding_window_buffer: in a decode build, the window's
    `sliding_window_size` keys before the current token plus the current token itself."""
    if _in_decode_build.get():
        sliding_window_size += 1
    return original(window_kv_indptr, translator, plan, req_pool_indices, sliding_window_size, *args, **kwargs)


def _on_route() -> bool:
    args = compat.server_args()
    return args is not None and asks_for_triton(args)


def full_verify_mask(original: Any, *args: Any, **kwargs: Any) -> Any:
    """AROUND eagle_utils.default_tree_mask_mode: the full mask on the Triton route (module docstring)."""
    if _on_route():
        from sglang.srt.speculative import eagle_utils

        return compat.full_tree_mask(eagle_utils)
    return original(*args, **kwargs)


def ngram_full_verify_mask(result: Any, worker: Any, *args: Any, **kwargs: Any) -> None:
    """AFTER NGRAMWorker.__init__: the NGRAM worker builds the full mask on the Triton route."""
    if _on_route():
        compat.ngram_verify_reads_full_mask()


def register_triton_route_hooks() -> bool:
    """Register the hooks above with sglang's HookRegistry, on CPU runs only. Idempotent; returns whether
    they are registered in this process."""
    global _registered
    from sglang_jenga.cpu_runtime.mamba.hooks import on_cpu

    if _registered or not on_cpu():
        return _registered
    registry, kind = compat.hook_registry()
    registry.register(compat.SERVER_ARGS_RESOLVE, interpret_if_asked, kind.AFTER)
    registry.register(compat.TRITON_INIT_FORWARD_METADATA, decode_metadata, kind.AROUND)
    registry.register(compat.TRITON_SLIDING_WINDOW_BUFFER, window_with_current_token, kind.AROUND)
    registry.register(compat.TREE_MASK_MODE, full_verify_mask, kind.AROUND)
    registry.register(compat.NGRAM_WORKER_INIT, ngram_full_verify_mask, kind.AFTER)
    _registered = True
    return True
