"""Gated delta net (Qwen3-Next linear attention) in plain torch: chunked prefill and recurrent decode.

Twins of sglang's FLA `chunk_gated_delta_rule` (kernels/ops/attention/fla/chunk.py), Triton
`fused_sigmoid_gating_delta_rule_update` (kernels/ops/attention/linear/fused_sigmoid_gating_recurrent.py)
and Triton `fused_gdn_gating` (kernels/ops/attention/linear/fused_gdn_gating.py).

Definitions, per value head h (K = key dim, V = value dim; value head h reads query/key head
h // (HV / H)). The state S is `[V, K]` per head, stored `[slot, HV, V, K]` like sglang's pool:
    g_t    = -exp(A_log) * softplus(a_t + dt_bias)          (log decay, <= 0)
    beta_t = sigmoid(b_t)
    q_t, k_t l2-normalised over K when asked (x / sqrt(sum x^2 + 1e-6)); q_t *= scale (K^-0.5)
    S_t    = exp(g_t) S_{t-1};  u_t = beta_t (v_t - S_t k_t);  S_t += u_t (outer) k_t
    o_t    = S_t q_t
Maths in float32.

Prefill evaluates this exactly per chunk of at most 64 tokens (FLA's chunk size). With in-chunk
cumulative decay G_t = sum_{s<=t} g_s and starting state S_0, the chunk's updates U solve the unit
lower-triangular system
    (I + L) U = beta * V - (beta * exp(G) * K) S_0^T,   L[t, s] = beta_t exp(G_t - G_s) (k_t . k_s), s < t
after which o_t = exp(G_t) S_0 q_t + sum_{s<=t} exp(G_t - G_s) (q_t . k_s) u_s and
S_L = exp(G_L) S_0 + sum_s exp(G_L - G_s) u_s (outer) k_s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHUNK_SIZE = 64


def _l2norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def _log_decay(
    A_log: torch.Tensor, a: torch.Tensor, dt_bias: torch.Tensor, beta: float, threshold: float
) -> torch.Tensor:
    x = a.float() + dt_bias.float()
    return -torch.exp(A_log.float()) * F.softplus(x, beta=beta, threshold=threshold)


def fused_gdn_gating(
    A_log: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    dt_bias: torch.Tensor,
    beta: float = 1.0,
    threshold: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token gates for prefill: `a`, `b` `[tokens, HV]`; A_log, dt_bias `[HV]`.

    Returns (g, beta) as `[1, tokens, HV]` float32 tensors: `g = -exp(A_log) softplus(a + dt_bias)`
    (softplus with the given beta/threshold), `beta = sigmoid(b)`. Mutates nothing.
    """
    g = _log_decay(A_log, a, dt_bias, beta, threshold)
    return g[None], torch.sigmoid(b.float())[None]


def _qk(q: torch.Tensor, k: torch.Tensor, nv: int, l2norm: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`[..., H, K]` queries/keys -> float32 per value head `[..., HV, K]`, normalised, q scaled."""
    q, k = q.float(), k.float()
    if l2norm:
        q, k = _l2norm(q), _l2norm(k)
    rep = nv // q.shape[-2]
    return (q * scale).repeat_interleave(rep, dim=-2), k.repeat_interleave(rep, dim=-2)


def _chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk, float32, heads first: q/k `[HV, L, K]`, v `[HV, L, V]`, g/beta `[HV, L]`, state `[HV, V, K]`.

    Returns (o `[HV, L, V]`, state after the chunk). Cost O(HV (L^2 (K + V) + L K V)).
    """
    length = q.shape[1]
    cum = g.cumsum(-1)  # [HV, L]
    lower = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    decay = torch.exp((cum[:, :, None] - cum[:, None, :]).masked_fill(~lower, -math.inf))  # [HV, t, s]
    s0 = state.transpose(-1, -2)  # [HV, K, V]
    kk = (k @ k.transpose(-1, -2)) * decay * beta[:, :, None]
    system = kk.tril(-1) + torch.eye(length, device=q.device)  # unit lower triangular
    rhs = beta[:, :, None] * v - (beta[:, :, None] * torch.exp(cum)[:, :, None] * k) @ s0
    u = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)  # [HV, L, V]
    o = (torch.exp(cum)[:, :, None] * q) @ s0 + ((q @ k.transpose(-1, -2)) * decay) @ u
    to_end = torch.exp(cum[:, -1:] - cum)[:, :, None]  # [HV, L, 1]
    s_end = s0 * torch.exp(cum[:, -1])[:, None, None] + (k * to_end).transpose(-1, -2) @ u
    return o, s_end.transpose(-1, -2)


def _slot_states(
    initial_state: torch.Tensor | None, indices: torch.Tensor, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 starting states `[n, HV, V, K]` (zeros where no state / index < 0) and the live mask."""
    live = indices >= 0
    states = torch.zeros(indices.numel(), *shape, dtype=torch.float32, device=indices.device)
    if initial_state is not None:
        states[live] = initial_state[indices[live]].float()
    return states, live


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    initial_state_indices: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    head_first: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    inplace_update: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Prefill over a varlen batch (or `B` equal-length rows).

    Args:
        q, k: `[B, T, H, K]`; v: `[B, T, HV, V]`; g (log decay), beta: `[B, T, HV]`.
        initial_state: `[num_slots, HV, V, K]` state pool, or None (zeros, nothing written).
        initial_state_indices: `[N]` slot per sequence (default: slot = sequence); an index < 0
            starts from zeros and is not written.
        cu_seqlens: `[N + 1]` packed sequence bounds (then B must be 1); None: each row is one
            sequence.
    Returns (o `[B, T, HV, V]` in q's dtype, final states `[N, HV, V, K]` float32, None); the
    third slot is FLA's per-chunk states, which this twin does not produce.
    Mutates `initial_state[initial_state_indices[i]]` for every live sequence when
    `inplace_update`. Raises ValueError for head_first (deprecated upstream).
    Cost: O(T * 64 * HV * (K + V) + (T / 64) * HV * K * V) flops.
    """
    if head_first:
        raise ValueError("chunk_gated_delta_rule: head_first is not supported")
    batch, tokens, _, kdim = q.shape
    nv, vdim = v.shape[-2], v.shape[-1]
    scale = kdim**-0.5 if scale is None else scale
    if cu_seqlens is None:
        bounds = [(b, 0, tokens) for b in range(batch)]
    else:
        cu = [int(c) for c in cu_seqlens.tolist()]
        bounds = [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
    indices = torch.arange(len(bounds)) if initial_state_indices is None else initial_state_indices.to(torch.int64)
    states, live = _slot_states(initial_state, indices, (nv, vdim, kdim))
    qh, kh = _qk(q, k, nv, use_qk_l2norm_in_kernel, scale)
    o = torch.zeros(batch, tokens, nv, vdim, dtype=torch.float32, device=q.device)
    for n, (b, start, end) in enumerate(bounds):
        for left in range(start, end, CHUNK_SIZE):
            part = slice(left, min(left + CHUNK_SIZE, end))
            o_c, states[n] = _chunk(
                qh[b, part].transpose(0, 1), kh[b, part].transpose(0, 1), v[b, part].float().transpose(0, 1),
                g[b, part].float().transpose(0, 1), beta[b, part].float().transpose(0, 1), states[n],
            )
            o[b, part] = o_c.transpose(0, 1)
    if initial_state is not None and inplace_update:
        initial_state[indices[live]] = states[live].to(initial_state.dtype)
    return o.to(q.dtype), states, None


def fused_sigmoid_gating_delta_rule_update(
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state_source: torch.Tensor | None,
    initial_state_indices: torch.Tensor,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm_in_kernel: bool = False,
    softplus_beta: float = 1.0,
    softplus_threshold: float = 20.0,
    scale: float | None = None,
    disable_state_update: bool = False,
) -> torch.Tensor:
    """Decode (and short multi-token runs): token-by-token gated delta rule with fused gating.

    Args:
        q, k: `[B, T, H, K]`; v: `[B, T, HV, V]`; a, b: `[B * T, HV]` (any leading shape whose
            flattening is token-major, as the Triton kernel reads them); A_log, dt_bias: `[HV]`.
        initial_state_source: `[num_slots, HV, V, K]` pool; initial_state_indices: `[N]` slot per
            sequence, < 0 meaning start from zeros and write nothing.
        cu_seqlens: `[N + 1]` packed bounds over the B * T tokens (B = 1); None: N = B rows of T.
    Returns o `[B, T, HV, V]` in q's dtype.
    Mutates `initial_state_source[initial_state_indices[i]]` of every live sequence unless
    `disable_state_update`. Cost O(tokens * HV * K * V), one vectorised step per position.
    """
    batch, steps, _, kdim = q.shape
    nv, vdim = v.shape[-2], v.shape[-1]
    scale = kdim**-0.5 if scale is None else scale
    flat = batch * steps
    if cu_seqlens is None:
        starts = torch.arange(batch, device=q.device) * steps
        lens = torch.full((batch,), steps, device=q.device)
    else:
        bounds = cu_seqlens.to(torch.int64)
        starts, lens = bounds[:-1], bounds[1:] - bounds[:-1]
    qh, kh = _qk(q.reshape(flat, -1, kdim), k.reshape(flat, -1, kdim), nv, use_qk_l2norm_in_kernel, scale)
    vf = v.reshape(flat, nv, vdim).float()
    gate = _log_decay(A_log, a.reshape(flat, nv), dt_bias, softplus_beta, softplus_threshold)
    beta = torch.sigmoid(b.reshape(flat, nv).float())
    indices = initial_state_indices.reshape(-1).to(torch.int64)
    state, live = _slot_states(initial_state_source, indices, (nv, vdim, kdim))
    o = torch.zeros(flat, nv, vdim, dtype=torch.float32, device=q.device)
    for t in range(int(lens.max()) if lens.numel() else 0):
        rows = (lens > t).nonzero().squeeze(-1)
        tok = starts[rows] + t
        s = state[rows] * torch.exp(gate[tok])[:, :, None, None]
        u = (vf[tok] - (s @ kh[tok][..., None]).squeeze(-1)) * beta[tok][:, :, None]
        s = s + u[..., None] * kh[tok][:, :, None, :]
        o[tok] = (s @ qh[tok][..., None]).squeeze(-1)
        state[rows] = s
    if initial_state_source is not None and not disable_state_update:
        initial_state_source[indices[live]] = state[live].to(initial_state_source.dtype)
    return o.view(batch, steps, nv, vdim).to(q.dtype)

