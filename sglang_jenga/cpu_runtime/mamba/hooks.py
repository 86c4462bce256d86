"""CPU-only sglang hooks that put the plain-torch kernels under sglang's own names.

sglang 0.5.23's Mamba2 mixer (srt/layers/attention/mamba/mamba.py) runs Triton kernels for the
SSD prefill scan and the decode state update, and binds its causal-conv1d functions only for
CUDA, NPU and XPU, so on CPU the first forward fails. Qwen3-Next's gated output norm and its MoE
shared-expert gate fall back to Triton on a CPU without AMX. `register_cpu_mamba_hooks()`
registers, with sglang's plugin `HookRegistry`, the hooks of `TARGETS` below (their sglang paths are
in sglang_jenga/adapter/compat.py with every other sglang name the project uses); `load_plugins()` applies
them in each sglang process. The gated delta net kernels themselves need no hook: sglang's CPU
branch imports `sgl_kernel.mamba`, which the stand-in provides (cpu_runtime/sgl_kernel/mamba.py).

Inert off CPU: nothing is registered unless `SGLANG_USE_CPU_ENGINE=1` and torch sees no CUDA.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from sglang_jenga.adapter import compat
from sglang_jenga.cpu_runtime.mamba import conv, elementwise, ssd

SGLANG_VERSION = "0.5.23"
MIXER_MODULE = compat.MAMBA_MIXER_MODULE
# Names mamba.py binds only on CUDA/NPU/XPU and calls unconditionally in MambaMixer2.forward;
# the `_triton` pair is what it uses with use_triton_causal_conv (NemotronH always sets it).
MIXER_CONV_NAMES: dict[str, Callable[..., Any]] = {
    "causal_conv1d_fn": conv.causal_conv1d_fn,
    "causal_conv1d_update": conv.causal_conv1d_update,
    "causal_conv1d_fn_triton": conv.causal_conv1d_fn,
    "causal_conv1d_update_triton": conv.causal_conv1d_update,
}


class Target(NamedTuple):
    """One hook: sglang's dotted path, the HookType name, the callable, and why."""

    path: str
    kind: str
    hook: Callable[..., Any]
    why: str


def bind_mixer_conv_names(*_args: Any, **_kwargs: Any) -> None:
    """BEFORE hook on MambaMixer2.__init__: define the conv names mamba.py left unbound.

    Sets each name of `MIXER_CONV_NAMES` in the mixer module only where it is missing, so a
    platform that bound its own kernels keeps them. Returns None (arguments unchanged).
    """
    namespace = vars(sys.modules[MIXER_MODULE])
    for name, fn in MIXER_CONV_NAMES.items():
        namespace.setdefault(name, fn)


TARGETS = (
    Target(
        compat.MAMBA_CHUNK_SCAN, "REPLACE",
        ssd.mamba_chunk_scan_combined,
        "Mamba2 prefill scan: five Triton kernels; re-exported by triton_ops and imported by mamba.py",
    ),
    Target(
        compat.MAMBA_STATE_UPDATE, "REPLACE",
        ssd.selective_state_update,
        "Mamba2 decode: the kernel of --mamba-backend triton (the default), which "
        "ssu_dispatch.TritonSSUBackend imports when the scheduler builds it",
    ),
    Target(
        compat.MAMBA_MIXER_INIT, "BEFORE", bind_mixer_conv_names,
        "mamba.py binds causal_conv1d_fn/_update(_triton) only on CUDA/NPU/XPU",
    ),
    Target(
        compat.GATED_RMS_NORM, "REPLACE",
        elementwise.rms_norm_gated,
        "Qwen3-Next's gated output norm (FusedRMSNormGated): sglang's CPU branch needs AMX and "
        "sgl-kernel's op, otherwise it launches Triton",
    ),
    Target(
        compat.FUSED_GATE_SIGMOID_MUL, "REPLACE",
        elementwise.launch_fused_gate_sigmoid_mul,
        "Qwen2/3 MoE shared-expert gate: fused_gate_sigmoid_mul(_add) launch this Triton kernel "
        "unless the gate uses the AMX backend",
    ),
)
_registered = False


def on_cpu() -> bool:
    """Whether this process runs sglang's CPU engine: SGLANG_USE_CPU_ENGINE=1 and no CUDA."""
    if os.environ.get("SGLANG_USE_CPU_ENGINE") != "1":
        return False
    import torch

    return not torch.cuda.is_available()


def register_cpu_mamba_hooks() -> bool:
    """Register the `TARGETS` hooks with sglang's HookRegistry, on CPU only. Idempotent.

    Returns whether the hooks are registered in this process. Imports only sglang's hook
    registry; the targets are resolved (imported) by `HookRegistry.apply_hooks()`, which
    `load_plugins()` runs after every plugin's `register()`.
    """
    global _registered
    if _registered or not on_cpu():
        return _registered
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    for target in TARGETS:
        HookRegistry.register(target.path, target.hook, HookType[target.kind])
    _registered = True
    return True
