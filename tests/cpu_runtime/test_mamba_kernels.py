"""The plain-torch Mamba2 / gated-delta-net kernels (sglang_jenga.cpu_runtime.mamba) against sglang 0.5.23.

Reference 1: sglang's own kernels, called through sglang's own Python wrappers with the very keyword
arguments our twins get, run by Triton's interpreter on CPU. Unlike test_kernels.py the sglang modules
are imported whole (the SSD scan is five autotuned kernels over four files), which takes ~15 s, once per
session, in a subprocess: this file run as a script (`TRITON_INTERPRET=1` must be set before triton is
imported). The interpreter needs three shims, all in `_interpreter_shims`: `torch.cpu.device` (the
wrappers enter `torch.get_device_module(dev).device(index)`), autotuning takes the first config
without benchmarking (there is no GPU timer), and module-level aliases of `tl` builtins (FLA's
`exp = tl.exp`) are late-bound so that the interpreter's patched builtins are the ones called.
FLA's chunked GDN prefill kernels overflow to NaN under triton 3.7's interpreter, so our chunked prefill is
compared with sglang's Triton recurrent GDN kernel on the same inputs (the same recurrence, token by
token). The same subprocess then applies `register_cpu_mamba_hooks()` through sglang's HookRegistry and
reports what sglang's modules see.

Reference 2: token-by-token recurrences written here from the definitions, and consistency checks
(prefill split in two with the state carried == one prefill; decode steps == a longer prefill).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sglang_jenga.cpu_runtime.mamba import conv, elementwise, gdn, hooks, ssd

Case = tuple[str, str, dict[str, Any]]  # (case id, kernel key, keyword arguments)


def _ours_gdn_chunk(**kw: Any) -> torch.Tensor:
    """Our prefill path on the recurrent kernel's arguments: gates, then the chunked rule."""
    g, beta = gdn.fused_gdn_gating(kw["A_log"], kw["a"], kw["b"], kw["dt_bias"])
    o, _, _ = gdn.chunk_gated_delta_rule(
        kw["q"], kw["k"], kw["v"], g, beta, initial_state=kw["initial_state_source"],
        initial_state_indices=kw["initial_state_indices"], cu_seqlens=kw["cu_seqlens"],
        use_qk_l2norm_in_kernel=kw["use_qk_l2norm_in_kernel"],
    )
    return o


KERNELS: dict[str, tuple[Callable[..., Any], str]] = {  # key: (ours, sglang's wrapper)
    "conv_fn": (conv.causal_conv1d_fn, "sglang.kernels.ops.mamba.causal_conv1d_triton:causal_conv1d_fn"),
    "conv_update": (conv.causal_conv1d_update, "sglang.kernels.ops.mamba.causal_conv1d_triton:causal_conv1d_update"),
    "ssd": (
        ssd.mamba_chunk_scan_combined, "sglang.kernels.ops.mamba.triton_ops.ssd_combined:mamba_chunk_scan_combined"
    ),
    "ssu": (ssd.selective_state_update, "sglang.kernels.ops.mamba.triton_ops.mamba_ssm:selective_state_update"),
    "gdn_gating": (gdn.fused_gdn_gating, "sglang.kernels.ops.attention.linear.fused_gdn_gating:fused_gdn_gating"),
    "gdn_recurrent": (
        gdn.fused_sigmoid_gating_delta_rule_update,
        "sglang.kernels.ops.attention.linear.fused_sigmoid_gating_recurrent:fused_sigmoid_gating_delta_rule_update",
    ),
    "gdn_chunk": (
        _ours_gdn_chunk,
        "sglang.kernels.ops.attention.linear.fused_sigmoid_gating_recurrent:fused_sigmoid_gating_delta_rule_update",
    ),
    "rms_norm_gated": (elementwise.rms_norm_gated, "sglang.kernels.ops.attention.fla.fused_norm_gate:rms_norm_gated"),
    "gate_sigmoid_mul": (
        elementwise.launch_fused_gate_sigmoid_mul,
        "sglang.kernels.ops.elementwise.elementwise:_launch_fused_gate_sigmoid_mul",
    ),
}


# ---------------------------------------------------------------------------------------------
# Case builders (seeded). Layouts are the ones sglang's callers pass: channel-last conv input, the
# pool's conv states with the feature axis contiguous, stride-0 expanded A/dt/D in decode.
# ---------------------------------------------------------------------------------------------


def _cu(lens: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)


def _conv_pool(gen: torch.Generator, slots: int, dim: int, width: int) -> torch.Tensor:
    """`[slots, dim, width-1]` view with the feature axis contiguous, like sglang's MambaPool."""
    return torch.randn(slots, width - 1, dim, generator=gen).transpose(1, 2)


def _conv_cases() -> list[Case]:
    gen, cases = torch.Generator().manual_seed(11), []
    table = [  # lens, has_initial_state, width, bias, activation
        ([7], [False], 4, True, "silu"),
        ([5, 1, 12, 2], [True, False, True, True], 4, True, "silu"),
        ([3, 9, 1], [False, True, True], 3, False, None),
        ([20, 4], [True, True], 2, True, "silu"),
    ]
    for n, (lens, init, width, bias, act) in enumerate(table):
        dim, total = 24, sum(lens)
        cases.append((f"conv_fn {n} lens={lens} init={init} W={width}", "conv_fn", {
            "x": torch.randn(total, dim, generator=gen).t(),  # channel-last, as the mixer passes it
            "weight": torch.randn(dim, width, generator=gen),
            "bias": torch.randn(dim, generator=gen) if bias else None,
            "conv_states": _conv_pool(gen, 6, dim, width),
            "query_start_loc": _cu(lens),
            "seq_lens_cpu": lens,
            "cache_indices": torch.randperm(6, generator=gen)[: len(lens)].int(),
            "has_initial_state": torch.tensor(init),
            "activation": act,
        }))
    for n, (bs, seqlen, width) in enumerate([(3, 0, 4), (2, 2, 4), (4, 0, 3)]):
        dim = 24
        shape = (bs, dim) if seqlen == 0 else (bs, dim, seqlen)
        cases.append((f"conv_update {n} bs={bs} seqlen={seqlen} W={width}", "conv_update", {
            "x": torch.randn(*shape, generator=gen),
            "conv_state": _conv_pool(gen, 6, dim, width),
            "weight": torch.randn(dim, width, generator=gen),
            "bias": torch.randn(dim, generator=gen),
            "activation": "silu",
            "conv_state_indices": torch.randperm(6, generator=gen)[:bs].int(),
        }))
    return cases


def _ssd_inputs(gen: torch.Generator, lens: list[int], heads: int, groups: int, p: int, n: int) -> dict[str, Any]:
    total = sum(lens)
    return {
        "x": torch.randn(1, total, heads, p, generator=gen),
        "dt": torch.randn(1, total, heads, generator=gen),
        "A": -torch.rand(heads, generator=gen) * 2,
        "B": torch.randn(1, total, groups, n, generator=gen),
        "C": torch.randn(1, total, groups, n, generator=gen),
    }


def _ssd_cases() -> list[Case]:
    gen, cases = torch.Generator().manual_seed(12), []
    table = [  # lens, has_initial_state, chunk, groups, D per headdim, tracks (seq, end offset)
        ([13], [False], 8, 1, False, []),
        ([5, 17, 1, 9], [True, False, True, True], 8, 2, True, [(1, 16), (3, 4)]),
        ([40, 3], [True, True], 16, 1, False, [(0, 32), (0, 17)]),
    ]
    for n, (lens, init, chunk, groups, d_full, tracks) in enumerate(table):
        heads, p, dstate = 4, 8, 16
        kw = _ssd_inputs(gen, lens, heads, groups, p, dstate)
        has = torch.tensor(init)
        pool = torch.randn(len(lens), heads, p, dstate, generator=gen)
        cu = _cu(lens)
        kw.update({
            "chunk_size": chunk,
            "D": torch.randn(heads, p, generator=gen) if d_full else torch.randn(heads, generator=gen),
            "dt_bias": torch.randn(heads, generator=gen),
            "initial_states": torch.where(has[:, None, None, None], pool, 0),  # as MambaMixer2 builds it
            "cu_seqlens": cu,
            "dt_softplus": True,
            "dt_limit": (0.0, float("inf")),
            "out": torch.zeros(1, sum(lens), heads, p),
            "return_varlen_states": True,
            "return_track_states": True,
            "track_seq_idx": torch.tensor([s for s, _ in tracks], dtype=torch.int64),
            "track_end_locs": torch.tensor([int(cu[s]) + off for s, off in tracks], dtype=torch.int64),
            "state_dtype": torch.float32,
        })
        cases.append((f"ssd {n} lens={lens} init={init} chunk={chunk}", "ssd", kw))
    kw = _ssd_inputs(gen, [21], 4, 1, 8, 16)
    kw.update({"chunk_size": 8, "dt_bias": torch.randn(4, generator=gen), "dt_softplus": True,
               "out": torch.zeros(1, 21, 4, 8), "return_final_states": True})
    cases.append(("ssd final-state only, no init", "ssd", kw))
    return cases


def _ssu_cases() -> list[Case]:
    gen, cases = torch.Generator().manual_seed(13), []
    heads, p, dstate, groups = 4, 8, 16, 2
    for n, (slots, tie) in enumerate([([3, 0, 5], True), ([1, -1, 4, 2], True), ([2, 5], False)]):
        bs = len(slots)
        if tie:  # the mixer's decode call: per-head values expanded with stride 0
            A = (-torch.rand(heads, generator=gen))[:, None, None].expand(-1, p, dstate)
            dt = torch.randn(bs, heads, generator=gen)[:, :, None].expand(-1, -1, p)
            dt_bias = torch.randn(heads, generator=gen)[:, None].expand(-1, p)
            D = torch.randn(heads, generator=gen)[:, None].expand(-1, p)
        else:
            A, dt = -torch.rand(heads, p, dstate, generator=gen), torch.randn(bs, heads, p, generator=gen)
            dt_bias, D = torch.randn(heads, p, generator=gen), torch.randn(heads, p, generator=gen)
        cases.append((f"ssu {n} slots={slots} tie_hdim={tie}", "ssu", {
            "state": torch.randn(6, heads, p, dstate, generator=gen),
            "x": torch.randn(bs, heads, p, generator=gen),
            "dt": dt, "A": A,
            "B": torch.randn(bs, groups, dstate, generator=gen),
            "C": torch.randn(bs, groups, dstate, generator=gen),
            "D": D, "z": None if tie else torch.randn(bs, heads, p, generator=gen),
            "dt_bias": dt_bias, "dt_softplus": True,
            "state_batch_indices": torch.tensor(slots, dtype=torch.int32),
            "out": torch.zeros(bs, heads, p),
        }))
    return cases


def _gdn_kwargs(gen: torch.Generator, lens: list[int], indices: list[int], dtype: torch.dtype) -> dict[str, Any]:
    heads, vheads, kdim, vdim, total = 2, 4, 16, 16, sum(lens)
    return {
        "A_log": torch.randn(vheads, generator=gen) * 0.5,
        "dt_bias": torch.randn(vheads, generator=gen),
        "q": torch.randn(1, total, heads, kdim, generator=gen).to(dtype),
        "k": torch.randn(1, total, heads, kdim, generator=gen).to(dtype),
        "v": torch.randn(1, total, vheads, vdim, generator=gen).to(dtype),
        "a": torch.randn(total, vheads, generator=gen).to(dtype),
        "b": torch.randn(total, vheads, generator=gen).to(dtype),
        "initial_state_source": torch.randn(6, vheads, vdim, kdim, generator=gen) * 0.3,
        "initial_state_indices": torch.tensor(indices, dtype=torch.int32),
        "cu_seqlens": _cu(lens),
        "use_qk_l2norm_in_kernel": True,
        "softplus_beta": 1.0,
        "softplus_threshold": 20.0,
    }


def _gdn_cases() -> list[Case]:
    gen, cases = torch.Generator().manual_seed(14), []
    for n, dtype in enumerate([torch.float32, torch.bfloat16]):
        a, b = torch.randn(9, 4, generator=gen).to(dtype), torch.randn(9, 4, generator=gen).to(dtype)
        args = {"A_log": torch.randn(4, generator=gen), "a": a, "b": b, "dt_bias": torch.randn(4, generator=gen)}
        cases.append((f"gdn_gating {n} {dtype}", "gdn_gating", args))
    decode = _gdn_kwargs(gen, [1, 1, 1], [4, -1, 0], torch.float32)  # one token per sequence
    cases.append(("gdn_recurrent decode slots=[4,-1,0]", "gdn_recurrent", decode))
    cases.append(("gdn_recurrent varlen", "gdn_recurrent", _gdn_kwargs(gen, [3, 1, 6], [2, 5, 1], torch.float32)))
    for n, (lens, idx) in enumerate([([9], [3]), ([70, 2, 65], [1, 4, 0]), ([1, 130], [5, 2])]):
        cases.append((f"gdn_chunk {n} lens={lens}", "gdn_chunk", _gdn_kwargs(gen, lens, idx, torch.float32)))
    return cases


def _elementwise_cases() -> list[Case]:
    gen, cases = torch.Generator().manual_seed(15), []
    for n, (act, residual) in enumerate([("swish", False), ("sigmoid", False), ("silu", True)]):
        args = {"x": torch.randn(6, 32, generator=gen), "g": torch.randn(6, 32, generator=gen),
                "weight": torch.randn(32, generator=gen), "bias": None, "activation": act, "eps": 1e-6}
        if residual:
            args.update(residual=torch.randn(6, 32, generator=gen), prenorm=True)
        cases.append((f"rms_norm_gated {n} {act} residual={residual}", "rms_norm_gated", args))
    for do_add in (False, True):
        args = {"hidden_states": torch.randn(5, 32, generator=gen), "gate_weight": torch.randn(32, generator=gen),
                "shared_output": torch.randn(5, 32, generator=gen), "output": torch.randn(5, 32, generator=gen),
                "do_add": do_add}
        cases.append((f"gate_sigmoid_mul do_add={do_add}", "gate_sigmoid_mul", args))
    return cases


CASES: list[Case] = _conv_cases() + _ssd_cases() + _ssu_cases() + _gdn_cases() + _elementwise_cases()
TOLERANCE = {torch.float32: 2e-4, torch.bfloat16: 2e-2}


# ---------------------------------------------------------------------------------------------
# The reference subprocess.
# ---------------------------------------------------------------------------------------------


def _clone(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _outcome(returned: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The return value plus every tensor argument after the call (what the kernel mutated)."""
    return {"returned": returned, **{k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}}


def _interpreter_shims() -> None:
    import contextlib

    import triton.language as tl
    import triton.runtime.autotuner as autotuner

    torch.cpu.device = lambda index=None: contextlib.nullcontext()  # type: ignore[attr-defined]
    autotuner.Autotuner._bench = lambda self, *args, config, **kwargs: [0.0, 0.0, 0.0]

    def late_bound(name: str) -> Callable[..., Any]:
        home = tl if hasattr(tl, name) else tl.math
        return lambda *args, **kwargs: getattr(home, name)(*args, **kwargs)

    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("sglang.kernels.ops"):
            continue
        for attr, value in list(vars(module).items()):
            name = getattr(value, "__name__", "")
            if tl.core.is_builtin(value) and (hasattr(tl, name) or hasattr(tl.math, name)):
                setattr(module, attr, late_bound(name))


def _add_triton_metadata(kernel: str, kwargs: dict[str, Any]) -> None:
    """The SSD wrapper also wants sglang's chunk metadata, built by sglang's own helper."""
    if kernel != "ssd" or kwargs.get("cu_seqlens") is None:
        return
    from sglang.srt.layers.attention.mamba.mamba2_metadata import Mamba2Metadata

    cu = kwargs["cu_seqlens"]
    kwargs["seq_idx"] = torch.repeat_interleave(torch.arange(cu.numel() - 1, dtype=torch.int32), cu.diff())[None]
    kwargs["chunk_indices"], kwargs["chunk_offsets"] = Mamba2Metadata._query_start_loc_to_chunk_indices_offsets(
        cu, kwargs["chunk_size"], int(cu[-1])
    )


def _hook_report() -> dict[str, Any]:
    """Apply our hooks through sglang's registry and report what sglang's modules now hold."""
    import importlib
    import pkgutil

    from sglang.srt.plugins.hook_registry import HookRegistry

    mixer = importlib.import_module(hooks.MIXER_MODULE)
    report: dict[str, Any] = {"missing_before": [n for n in hooks.MIXER_CONV_NAMES if not hasattr(mixer, n)]}
    report["registered"] = hooks.register_cpu_mamba_hooks()
    HookRegistry.apply_hooks()
    report["patched"] = sorted(HookRegistry._patched)
    report["wrapped"] = {
        t.path: getattr(pkgutil.resolve_name(t.path), "__wrapped__", None) is not None for t in hooks.TARGETS
    }
    scan = mixer.mamba_chunk_scan_combined  # the name mamba.py imported before the hooks ran
    report["mixer_scan_is_patched"] = getattr(scan, "__wrapped__", None) is not None
    hooks.bind_mixer_conv_names()
    report["missing_after"] = [n for n in hooks.MIXER_CONV_NAMES if not hasattr(mixer, n)]
    return report


def _reference_main(cases_path: str, results_path: str) -> None:
    import importlib

    assert os.environ.get("TRITON_INTERPRET") == "1" and "triton" not in sys.modules
    modules = {key: path.split(":") for key, (_, path) in KERNELS.items()}
    for module_name, _ in modules.values():
        importlib.import_module(module_name)
    _interpreter_shims()
    results = {}
    for case_id, kernel, loaded in torch.load(cases_path, weights_only=False):
        module_name, attr = modules[kernel]
        kwargs = _clone(loaded)
        _add_triton_metadata(kernel, kwargs)
        returned = getattr(sys.modules[module_name], attr)(**kwargs)
        results[case_id] = _outcome(returned, kwargs)
    results["hooks"] = _hook_report()
    torch.save(results, results_path)


@pytest.fixture(scope="session")
def triton_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("mamba_triton_reference")
    cases_path, results_path = workdir / "cases.pt", workdir / "results.pt"
    torch.save(CASES, cases_path)
    env = {**os.environ, "TRITON_INTERPRET": "1", "SGLANG_USE_CPU_ENGINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, str(cases_path), str(results_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results: dict[str, Any] = torch.load(results_path, weights_only=False)
    return results


# ---------------------------------------------------------------------------------------------
# Reference 1: sglang's kernels.
# ---------------------------------------------------------------------------------------------


def _assert_close(ours: Any, ref: Any, where: str, tol: float) -> None:
    if isinstance(ours, tuple | list):
        assert isinstance(ref, tuple | list) and len(ours) == len(ref), where
        for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
            _assert_close(a, b, f"{where}[{k}]", tol)
    elif isinstance(ours, torch.Tensor):
        assert isinstance(ref, torch.Tensor) and ours.shape == ref.shape, f"{where}: {ours.shape} vs {ref}"
        assert ours.dtype == ref.dtype, f"{where}: {ours.dtype} vs {ref.dtype}"
        torch.testing.assert_close(ours, ref, atol=tol, rtol=tol, msg=lambda m: f"{where}: {m}")
    else:
        assert ours == ref, where


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_matches_sglang_kernel(case: Case, triton_results: dict[str, Any]) -> None:
    case_id, kernel, kwargs = case
    ours_fn = KERNELS[kernel][0]
    args = _clone(kwargs)
    ours = _outcome(ours_fn(**args), args)
    ref = triton_results[case_id]
    tol = max(TOLERANCE[t.dtype] for t in kwargs.values() if isinstance(t, torch.Tensor) and t.is_floating_point())
    for name in ours:  # the reference also holds the extra metadata sglang's wrapper takes
        _assert_close(ours[name], ref[name], f"{case_id}: {name}", tol)
    changed = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor) and not torch.equal(v, ref[k])]
    assert ref["returned"] is not None or changed, f"{case_id}: the reference wrote nothing"


def test_hooks_reach_sglang_modules(triton_results: dict[str, Any]) -> None:
    report = triton_results["hooks"]
    assert report["missing_before"] == list(hooks.MIXER_CONV_NAMES)  # still unbound on CPU in sglang
    assert report["registered"] is True
    assert all(report["wrapped"].values()), report["wrapped"]
    assert {t.path for t in hooks.TARGETS} <= set(report["patched"])
    assert report["mixer_scan_is_patched"] is True
    assert report["missing_after"] == []


# ---------------------------------------------------------------------------------------------
# Reference 2: token-by-token recurrences from the definitions, and consistency.
# ---------------------------------------------------------------------------------------------


def _ssd_reference(kw: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(y `[T, H, P]`, final state per sequence) by the per-token recurrence."""
    x, B, C = kw["x"][0], kw["B"][0], kw["C"][0]
    heads = x.shape[1]
    rep = heads // B.shape[1]
    D = kw["D"] if kw["D"].dim() == 2 else kw["D"][:, None]
    y, finals, cu = torch.zeros_like(x), [], kw["cu_seqlens"].tolist()
    for i in range(len(cu) - 1):
        s = kw["initial_states"][i].clone()
        for t in range(cu[i], cu[i + 1]):
            dt = F.softplus(kw["dt"][0, t] + kw["dt_bias"])
            b, c = B[t].repeat_interleave(rep, 0), C[t].repeat_interleave(rep, 0)
            s = s * torch.exp(dt * kw["A"])[:, None, None] + (dt[:, None] * x[t])[:, :, None] * b[:, None, :]
            y[t] = (s * c[:, None, :]).sum(-1) + D * x[t]
        finals.append(s)
    return y, torch.stack(finals)


def _gdn_reference(kw: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(o `[T, HV, V]`, the state pool afterwards) by the per-token delta rule."""
    pool, cu = kw["initial_state_source"].clone(), kw["cu_seqlens"].tolist()
    q, k, v = (t[0].float() for t in (kw["q"], kw["k"], kw["v"]))
    rep = v.shape[1] // q.shape[1]
    o = torch.zeros_like(v)
    for i, slot in enumerate(kw["initial_state_indices"].tolist()):
        s = pool[slot].clone() if slot >= 0 else torch.zeros_like(pool[0])
        for t in range(cu[i], cu[i + 1]):
            g = -torch.exp(kw["A_log"]) * F.softplus(kw["a"][t].float() + kw["dt_bias"])
            beta = torch.sigmoid(kw["b"][t].float())
            qt = F.normalize(q[t], dim=-1, eps=0).repeat_interleave(rep, 0) * q.shape[-1] ** -0.5
            kt = F.normalize(k[t], dim=-1, eps=0).repeat_interleave(rep, 0)
            s = s * torch.exp(g)[:, None, None]
            u = (v[t] - torch.einsum("hvk,hk->hv", s, kt)) * beta[:, None]
            s = s + u[:, :, None] * kt[:, None, :]
            o[t] = torch.einsum("hvk,hk->hv", s, qt)
        if slot >= 0:
            pool[slot] = s
    return o, pool


@pytest.mark.parametrize("case", [c for c in CASES if c[1] == "ssd" and "cu_seqlens" in c[2]], ids=lambda c: c[0])
def test_ssd_prefill_matches_token_recurrence(case: Case) -> None:
    kw = _clone(case[2])
    _, varlen, _ = ssd.mamba_chunk_scan_combined(**kw)
    y, finals = _ssd_reference(case[2])
    torch.testing.assert_close(kw["out"][0], y, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(varlen, finals, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", [c for c in CASES if c[1] == "gdn_chunk"], ids=lambda c: c[0])
@pytest.mark.parametrize("indices", ["as built", "one sequence without a slot"])
def test_gdn_prefill_matches_token_recurrence(case: Case, indices: str) -> None:
    kw = _clone(case[2])
    if indices != "as built":
        kw["initial_state_indices"][0] = -1
    ref_o, ref_pool = _gdn_reference(kw)
    o = _ours_gdn_chunk(**kw)
    torch.testing.assert_close(o[0], ref_o, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(kw["initial_state_source"], ref_pool, atol=1e-4, rtol=1e-4)


def test_mamba_split_prefill_and_decode_continue_one_prefill() -> None:
    """Prefill [0, 6), then [6, 14) from the saved conv/SSM state, then 3 decode steps ==
    one prefill of 17 tokens (conv state handoff, has_initial_state, SSD initial states)."""
    gen = torch.Generator().manual_seed(21)
    heads, p, dstate, width, total = 2, 4, 8, 4, 17
    dim = heads * p
    weight, A = torch.randn(dim, width, generator=gen), -torch.rand(heads, generator=gen)
    x = torch.randn(total, dim, generator=gen)
    dt, B, C = (torch.randn(total, *s, generator=gen) for s in ((heads,), (1, dstate), (1, dstate)))
    D, dt_bias = torch.randn(heads, generator=gen), torch.randn(heads, generator=gen)

    def prefill(lo: int, hi: int, conv_pool: torch.Tensor, ssm: torch.Tensor, has_init: bool) -> torch.Tensor:
        cu = torch.tensor([0, hi - lo], dtype=torch.int32)
        xc = conv.causal_conv1d_fn(x[lo:hi].t(), weight, None, conv_states=conv_pool, query_start_loc=cu,
                                   cache_indices=torch.tensor([1]), has_initial_state=torch.tensor([has_init]))
        out = torch.zeros(1, hi - lo, heads, p)
        init = ssm[1:2] if has_init else torch.zeros(1, heads, p, dstate)
        varlen = ssd.mamba_chunk_scan_combined(
            xc.t().reshape(1, hi - lo, heads, p), dt[None, lo:hi], A, B[None, lo:hi], C[None, lo:hi], 4, D=D,
            dt_bias=dt_bias, initial_states=init, cu_seqlens=cu, dt_softplus=True, out=out,
            return_varlen_states=True, state_dtype=torch.float32,
        )
        ssm[1] = varlen[0]
        return out[0]

    whole = prefill(0, total, torch.zeros(3, dim, width - 1), torch.zeros(3, heads, p, dstate), False)
    conv_pool, ssm = torch.zeros(3, dim, width - 1), torch.zeros(3, heads, p, dstate)
    parts = [prefill(0, 6, conv_pool, ssm, False), prefill(6, 14, conv_pool, ssm, True)]
    for t in range(14, total):
        xc = conv.causal_conv1d_update(
            x[t : t + 1], conv_pool, weight, None, "silu", conv_state_indices=torch.tensor([1])
        )
        out = torch.zeros(1, heads, p)
        ssd.selective_state_update(
            ssm, xc.view(1, heads, p), dt[t : t + 1, :, None].expand(-1, -1, p), A[:, None, None].expand(-1, p, dstate),
            B[t : t + 1], C[t : t + 1], D[:, None].expand(-1, p), dt_bias=dt_bias[:, None].expand(-1, p),
            dt_softplus=True, state_batch_indices=torch.tensor([1]), out=out,
        )
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts), whole, atol=1e-4, rtol=1e-4)


def test_gdn_split_prefill_and_decode_continue_one_prefill() -> None:
    gen = torch.Generator().manual_seed(22)
    kw = _gdn_kwargs(gen, [75], [2], torch.float32)
    whole = _ours_gdn_chunk(**_clone(kw))
    pool = kw["initial_state_source"].clone()
    pieces = []
    for lo, hi in [(0, 10), (10, 72)]:  # chunked prefill, state carried in the pool
        part = {**kw, "initial_state_source": pool, "cu_seqlens": torch.tensor([0, hi - lo], dtype=torch.int32)}
        part.update({n: kw[n][:, lo:hi] for n in ("q", "k", "v")} | {n: kw[n][lo:hi] for n in ("a", "b")})
        pieces.append(_ours_gdn_chunk(**part))
    for t in range(72, 75):  # decode through the torch op sglang calls
        step = {n: kw[n][:, t : t + 1] for n in ("q", "k", "v")} | {n: kw[n][t : t + 1] for n in ("a", "b")}
        pieces.append(gdn.fused_sigmoid_gating_delta_rule_update(
            kw["A_log"], kw["dt_bias"], **step, initial_state_source=pool,
            initial_state_indices=kw["initial_state_indices"], cu_seqlens=torch.tensor([0, 1]),
            use_qk_l2norm_in_kernel=True,
        ))
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Contract details the references cannot show.
# ---------------------------------------------------------------------------------------------


def test_padding_slots_are_skipped_and_untouched() -> None:
    gen = torch.Generator().manual_seed(23)
    pool = torch.randn(4, 6, 3, generator=gen)
    before = pool.clone()
    out = conv.causal_conv1d_fn(torch.randn(6, 7, generator=gen), torch.randn(6, 4, generator=gen),
                                conv_states=pool, query_start_loc=torch.tensor([0, 3, 7]),
                                cache_indices=torch.tensor([-1, 2]), has_initial_state=torch.tensor([True, True]))
    assert torch.equal(out[:, :3], torch.zeros(6, 3)) and not torch.equal(pool[2], before[2])
    assert torch.equal(pool[[0, 1, 3]], before[[0, 1, 3]])
    step = conv.causal_conv1d_update(torch.randn(2, 6, generator=gen), pool, torch.randn(6, 4, generator=gen),
                                     conv_state_indices=torch.tensor([3, -1]))
    assert torch.equal(step[1], torch.zeros(6)) and torch.equal(pool[[0, 1]], before[[0, 1]])


def test_unsupported_arguments_raise() -> None:
    x, state, w = torch.zeros(1, 4), torch.zeros(2, 4, 3), torch.zeros(4, 4)
    with pytest.raises(NotImplementedError):
        conv.causal_conv1d_update(x, state, w, retrieve_parent_token=torch.zeros(1, 1))
    with pytest.raises(NotImplementedError):
        conv.causal_conv1d_fn(x.t(), w, block_table=torch.zeros(1, 2))
    state, xs, ones = torch.zeros(2, 1, 4, 8), torch.zeros(1, 1, 4), torch.ones(1, 4, 8)
    with pytest.raises(NotImplementedError):
        ssd.selective_state_update(state, xs, xs, ones, torch.zeros(1, 1, 8), torch.zeros(1, 1, 8),
                                   out=xs.clone(), retrieve_parent_token=torch.zeros(1, 1))


def test_standin_sgl_kernel_mamba_and_its_two_ops() -> None:
    """What sglang's CPU branch imports: three names from sgl_kernel.mamba, two torch ops."""
    from sglang_jenga.cpu_runtime.sgl_kernel import mamba as standin

    for name in ("causal_conv1d_fn_cpu", "causal_conv1d_update_cpu", "chunk_gated_delta_rule_cpu"):
        assert callable(getattr(standin, name)) and getattr(standin, name).__doc__
    kw = _gdn_kwargs(torch.Generator().manual_seed(24), [1, 1], [3, 0], torch.bfloat16)
    g, beta = torch.ops.sgl_kernel.fused_gdn_gating_cpu(kw["A_log"], kw["a"], kw["b"], kw["dt_bias"])
    assert g.dtype == torch.float32 and beta.dtype == torch.bfloat16 and g.shape == (1, 2, 4)
    pool = kw["initial_state_source"].clone()
    op_out = torch.ops.sgl_kernel.fused_sigmoid_gating_delta_rule_update_cpu(  # keywords as gdn_triton.py
        A_log=kw["A_log"], dt_bias=kw["dt_bias"], q=kw["q"], k=kw["k"], v=kw["v"], a=kw["a"], b=kw["b"],
        initial_state_source=pool, initial_state_indices=kw["initial_state_indices"],
        cu_seqlens=kw["cu_seqlens"], use_qk_l2norm_in_kernel=True, softplus_beta=1.0, softplus_threshold=20.0,
    )
    direct = gdn.fused_sigmoid_gating_delta_rule_update(**kw)
    assert torch.equal(op_out, direct) and torch.equal(pool, kw["initial_state_source"])
    from sglang_jenga.cpu_runtime.mamba.ops import define_sgl_kernel_ops

    assert define_sgl_kernel_ops() == []  # idempotent


def test_hooks_register_once_and_only_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    monkeypatch.setattr(HookRegistry, "_hooks", defaultdict(list))
    monkeypatch.setattr(hooks, "_registered", False)
    monkeypatch.delenv("SGLANG_USE_CPU_ENGINE", raising=False)
    assert hooks.register_cpu_mamba_hooks() is False and not HookRegistry._hooks
    monkeypatch.setenv("SGLANG_USE_CPU_ENGINE", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hooks.register_cpu_mamba_hooks() is False and not HookRegistry._hooks
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hooks.register_cpu_mamba_hooks() is True
    assert hooks.register_cpu_mamba_hooks() is True
    assert {path: [(kind, fn) for kind, fn, _ in entries] for path, entries in HookRegistry._hooks.items()} == {
        t.path: [(HookType[t.kind], t.hook)] for t in hooks.TARGETS
    }


if __name__ == "__main__":
    _reference_main(sys.argv[1], sys.argv[2])
