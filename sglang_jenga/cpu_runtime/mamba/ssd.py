"""Mamba2 selective state space (SSD) in plain torch: chunked prefill scan and decode update.

Twins of sglang's Triton `mamba_chunk_scan_combined` (kernels/ops/mamba/triton_ops/ssd_combined.py)
and `selective_state_update` (kernels/ops/mamba/triton_ops/mamba_ssm.py), same argument names and
return conventions.

Definitions, per head h (P = headdim, N = dstate, G groups; head h reads group h // (H / G)):
    dt_t  = clamp(softplus?(dt_t + dt_bias), dt_limit)        (softplus: linear above 20)
    S_t   = exp(dt_t * A) * S_{t-1} + dt_t * x_t (outer) B_t   (S: [P, N], float32)
    y_t   = S_t @ C_t + D * x_t, then y_t *= silu(z_t) if z is given.
A sequence starts from its initial state, or from zeros.

Prefill evaluates this exactly, one piece of at most `chunk_size` tokens at a time: inside a piece
of L tokens with running log-decay `cum_t = sum_{s<=t} dt_s A`,
    y_t = sum_{s<=t} exp(cum_t - cum_s) dt_s (C_t . B_s) x_s + exp(cum_t) C_t . S_in
    S_out = exp(cum_L) S_in + sum_s exp(cum_L - cum_s) dt_s x_s (outer) B_s
(an L x L masked product per piece, the quadratic form of the SSD paper), and the state is carried
from piece to piece. Pieces are cut at multiples of `chunk_size` in the packed token stream and
at requested track positions, so the chunk-boundary states the Triton kernels expose are read off
directly. Maths in float32.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

PAD_SLOT_ID = -1


def _prep_dt(dt: torch.Tensor, dt_bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    return F.softplus(dt, beta=1.0, threshold=20.0) if softplus else dt


def _heads(t: torch.Tensor, nheads: int) -> torch.Tensor:
    """`[..., G, N]` group tensor -> `[..., H, N]` float32, head h reading group h // (H / G)."""
    return t.float().repeat_interleave(nheads // t.shape[-2], dim=-2)


def _scan_piece(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, s_in: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One piece, all float32: x `[L,H,P]`, dt `[L,H]`, A `[H]`, B/C `[L,H,N]`, s_in `[H,P,N]`.

    Returns (y `[L,H,P]` without the D and z terms, s_out `[H,P,N]`). Cost O(L^2 H (N + P)).
    """
    cum = torch.cumsum(dt * A, dim=0)  # [L, H]
    length = x.shape[0]
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    gap = (cum[:, None, :] - cum[None, :, :]).masked_fill(~causal[:, :, None], -math.inf)
    weights = torch.einsum("thn,shn->tsh", C, B) * torch.exp(gap) * dt[None, :, :]
    y = torch.einsum("tsh,shp->thp", weights, x)
    y = y + torch.einsum("thn,hpn->thp", C, s_in) * torch.exp(cum)[:, :, None]
    to_end = torch.exp(cum[-1][None, :] - cum) * dt  # [L, H]
    s_out = s_in * torch.exp(cum[-1])[:, None, None] + torch.einsum("sh,shp,shn->hpn", to_end, x, B)
    return y, s_out


class _Scan(NamedTuple):
    """Inputs (float32, dt prepared, B/C per head) and outputs of one prefill scan."""

    x: torch.Tensor  # [batch, seqlen, H, P]
    dt: torch.Tensor  # [batch, seqlen, H]
    A: torch.Tensor  # [H]
    B: torch.Tensor  # [batch, seqlen, H, N]
    C: torch.Tensor  # [batch, seqlen, H, N]
    chunk_size: int
    y: torch.Tensor  # [batch, seqlen, H, P], written
    chunk_states: torch.Tensor  # [batch, nchunks, H, P, N], written at chunk boundaries
    track_states: torch.Tensor  # [n_track, H, P, N], written at track positions


def _scan_sequence(
    scan: _Scan, b: int, start: int, end: int, state: torch.Tensor, tracks: list[tuple[int, int]]
) -> torch.Tensor:
    """Scan tokens `[start, end)` of row b from `state`; returns the final state.

    Cuts the sequence at packed multiples of `chunk_size` (recording `chunk_states` there) and
    at its track positions (recording `track_states`); writes `scan.y[b, start:end]`.
    """
    seqlen, size = scan.x.shape[1], scan.chunk_size
    stops: dict[int, list[int]] = {p: [] for p in range(start - start % size + size, end, size)}
    for j, pos in tracks:
        stops.setdefault(pos, []).append(j)
    for j in stops.get(start, []):
        scan.track_states[j] = state
    cuts = sorted({start, end, *stops})
    for left, right in zip(cuts[:-1], cuts[1:], strict=True):
        piece = slice(left, right)
        y, state = _scan_piece(
            scan.x[b, piece].float(), scan.dt[b, piece], scan.A, scan.B[b, piece], scan.C[b, piece], state
        )
        scan.y[b, piece] = y
        if right % size == 0 and right < seqlen:
            scan.chunk_states[b, right // size] = state
        for j in stops.get(right, []):
            scan.track_states[j] = state
    return state


def _row_sequences(
    batch: int, seqlen: int, cu_seqlens: torch.Tensor | None, seq_idx: torch.Tensor | None
) -> list[list[tuple[int, int, int | None]]]:
    """Per batch row, its sequences as (start, end, initial-state row or None)."""
    Row = list[tuple[int, int, int | None]]
    if cu_seqlens is not None:
        cu = [int(v) for v in cu_seqlens.tolist()]
        varlen: Row = [(cu[i], cu[i + 1], i) for i in range(len(cu) - 1)]
        return [varlen]
    rows: list[Row] = []
    for b in range(batch):
        if seq_idx is None:
            rows.append([(0, seqlen, b)])
            continue
        ids = seq_idx[b].tolist()
        cuts = [0] + [t for t in range(1, seqlen) if ids[t] != ids[t - 1]] + [seqlen]
        rows.append([(cuts[i], cuts[i + 1], b if i == 0 else None) for i in range(len(cuts) - 1)])
    return rows


def mamba_chunk_scan_combined(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    chunk_indices: torch.Tensor | None = None,
    chunk_offsets: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    out: torch.Tensor | None = None,
    return_final_states: bool = False,
    return_varlen_states: bool = False,
    return_intermediate_states: bool = False,
    state_dtype: torch.dtype | None = None,
    return_track_states: bool = False,
    track_seq_idx: torch.Tensor | None = None,
    track_end_locs: torch.Tensor | None = None,
) -> Any:
    """Prefill scan over a batch (or one varlen row) of sequences.

    Args (as the Triton wrapper):
        x: `[batch, seqlen, H, P]`; dt: `[batch, seqlen, H]`; A: `[H]`;
        B, C: `[batch, seqlen, G, N]`; D: `[H]` or `[H, P]`; z: like x or None; dt_bias: `[H]`.
        initial_states: `[num_seqs, H, P, N]` in varlen mode (one per sequence), else
            `[batch, H, P, N]`; None means zeros.
        cu_seqlens: `[num_seqs + 1]`, varlen mode (batch must be 1); only honoured, as in
            the Triton wrapper, when `return_varlen_states` is set. Without it, `seq_idx`
            (`[batch, seqlen]`) splits rows into sequences, and only a row's first sequence
            reads `initial_states`.
        chunk_indices / chunk_offsets: accepted and unused (they describe the Triton grid).
        out: `[batch, seqlen, H, P]`, written in place when given.
        track_seq_idx / track_end_locs: `[n]`, with `return_track_states`: the state of sequence
            `track_seq_idx[i]` after its tokens up to packed position `track_end_locs[i]` (exclusive).
    Returns what the Triton wrapper returns for the same flags; among them `states`
    (`[batch, nchunks, H, P, N]`, the state entering each chunk of `chunk_size` packed tokens: the
    row's first initial state for chunk 0, else the state of the sequence owning the chunk's
    previous token after that token), `final_states` (`[batch, H, P, N]` float32, the end of each
    row's last sequence), `varlen_states` (`[num_seqs, H, P, N]`, each sequence's final state) and
    `track_states` (`[1, n, H, P, N]`, None for n = 0); all but final_states in `state_dtype` (default C's dtype).
    Mutates only `out`.
    Cost: O(tokens * chunk_size * H * (N + P)) flops plus one Python step per piece.
    """
    del chunk_indices, chunk_offsets
    if not return_varlen_states:
        cu_seqlens = None
    batch, seqlen, nheads, headdim = x.shape
    dstate = B.shape[-1]
    states_dtype = state_dtype if state_dtype is not None else C.dtype
    dt_all = _prep_dt(dt, dt_bias, dt_softplus).clamp(dt_limit[0], dt_limit[1])
    y_all = torch.empty(batch, seqlen, nheads, headdim, dtype=torch.float32, device=x.device)
    nchunks = max(1, -(-seqlen // chunk_size))
    chunk_states = torch.zeros(batch, nchunks, nheads, headdim, dstate, dtype=torch.float32, device=x.device)
    final_states = torch.zeros(batch, nheads, headdim, dstate, dtype=torch.float32, device=x.device)
    rows = _row_sequences(batch, seqlen, cu_seqlens, seq_idx)
    varlen_states = torch.zeros(len(rows[0]), nheads, headdim, dstate, dtype=torch.float32, device=x.device)
    tracks = _track_requests(track_seq_idx, track_end_locs) if return_track_states else {}
    n_track = sum(len(v) for v in tracks.values())
    track_states = torch.zeros(n_track, nheads, headdim, dstate, dtype=torch.float32, device=x.device)
    scan = _Scan(
        x, dt_all, A.float(), _heads(B, nheads), _heads(C, nheads), chunk_size, y_all, chunk_states, track_states
    )
    zero = torch.zeros(nheads, headdim, dstate, dtype=torch.float32, device=x.device)
    for b, sequences in enumerate(rows):
        for n, (start, end, init_row) in enumerate(sequences):
            init = zero if initial_states is None or init_row is None else initial_states[init_row].float()
            if start == 0:
                chunk_states[b, 0] = init
            final_states[b] = _scan_sequence(scan, b, start, end, init, tracks.get(n, []))
            if cu_seqlens is not None:
                varlen_states[n] = final_states[b]
    if D is not None:
        d = D.float() if D.dim() == 2 else D.float()[:, None]
        y_all = y_all + x.float() * d
    if z is not None:
        y_all = y_all * F.silu(z.float())
    if out is None:
        out = torch.empty_like(x)
    out.copy_(y_all.to(out.dtype))
    flags = (return_final_states, return_varlen_states, return_intermediate_states, return_track_states)
    track = track_states.to(states_dtype)[None] if n_track else None  # None when nothing was asked for
    return _wrapper_result(flags, chunk_states.to(states_dtype), final_states, varlen_states.to(states_dtype), track)


def _wrapper_result(
    flags: tuple[bool, bool, bool, bool],
    states: torch.Tensor,
    final: torch.Tensor,
    varlen: torch.Tensor,
    track: torch.Tensor | None,
) -> Any:
    """What sglang's Triton `mamba_chunk_scan_combined` returns for (final, varlen, intermediate, track)."""
    want_final, want_varlen, want_intermediate, want_track = flags
    if want_track:
        return states, varlen, track
    if want_intermediate:
        head = (states, final) if want_final else (states,)
        result = (*head, varlen) if want_varlen else head
        return result if len(result) > 1 else result[0]
    if not want_varlen:
        return final if want_final else None
    return (final, varlen) if want_final else varlen

def _track_requests(
    track_seq_idx: torch.Tensor | None, track_end_locs: torch.Tensor | None
) -> dict[int, list[tuple[int, int]]]:
    """{sequence: [(request number, packed end position)]} for the track-state outputs."""
    if track_seq_idx is None or track_end_locs is None:
        return {}
    by_seq: dict[int, list[tuple[int, int]]] = {}
    for j, (seq, pos) in enumerate(zip(track_seq_idx.tolist(), track_end_locs.tolist(), strict=True)):
        by_seq.setdefault(int(seq), []).append((j, int(pos)))
    return by_seq


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    state_batch_indices: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
    out: torch.Tensor | None = None,
    disable_state_update: bool = False,
    intermediate_states_buffer: torch.Tensor | None = None,
    cache_steps: int | None = None,
    retrieve_parent_token: torch.Tensor | None = None,
    intermediate_state_indices: torch.Tensor | None = None,
    enable_stochastic_rounding: bool = False,
    cache_philox_rounds: int = 0,
) -> None:
    """Decode: advance each row's SSM state by T tokens (usually 1) and write the outputs.

    Args (as the Triton wrapper; lower-rank forms are unsqueezed the same way):
        state: `[num_slots, H, P, N]` state buffer. x, dt, z, out: `[batch, T, H, P]`
        (or `[batch, H, P]`). A: `[H, P, N]`; B, C: `[batch, T, G, N]` (or `[batch, G, N]`);
        D, dt_bias: `[H, P]`. state_batch_indices: `[batch]` slot of each row (default: row);
        a row whose slot is `pad_slot_id` starts from zeros and writes no state.
        intermediate_states_buffer: flat buffer read as `[-1, cache_steps, H, P, N]`; when given,
            the state after step t of row b goes to entry `intermediate_state_indices[b]`
            (default: its slot), step t.
    Mutates `out` (required), `state[slot]` of every non-padding row unless
    `disable_state_update`, and the intermediate buffer when given.
    Raises NotImplementedError for EAGLE tree masks (`retrieve_parent_token`) and stochastic
    rounding (GPU fp16 only). Cost: O(batch * T * H * P * N).
    """
    if retrieve_parent_token is not None or enable_stochastic_rounding:
        raise NotImplementedError("selective_state_update: tree verify / stochastic rounding")
    assert out is not None, "selective_state_update writes into a preallocated `out`"
    x4, dt4, out4, B4, C4 = (_as_btpd(t) for t in (x, dt, out, B, C))
    z4 = None if z is None else _as_btpd(z)
    state4 = state if state.dim() == 4 else state.unsqueeze(1)
    A3 = A if A.dim() == 3 else A.unsqueeze(0)
    nheads = state4.shape[1]
    batch, steps = x4.shape[:2]
    rows = torch.arange(batch, device=x.device)
    slots = rows if state_batch_indices is None else state_batch_indices.to(torch.int64)
    live = slots != pad_slot_id
    s = torch.zeros(batch, *state4.shape[1:], dtype=torch.float32, device=x.device)
    s[live] = state4[slots[live]].float()
    bias = None if dt_bias is None else (dt_bias if dt_bias.dim() == 2 else dt_bias.unsqueeze(0))
    for t in range(steps):
        d = _prep_dt(dt4[:, t], bias, dt_softplus)  # [batch, H, P]
        xt = x4[:, t].float()
        s = s * torch.exp(A3.float() * d[..., None]) + (d * xt)[..., None] * _heads(B4[:, t], nheads)[:, :, None, :]
        if intermediate_states_buffer is not None:
            cache_rows = slots if intermediate_state_indices is None else intermediate_state_indices.to(torch.int64)
            buf = intermediate_states_buffer.view(-1, cache_steps or steps, *state4.shape[1:])
            buf[cache_rows[live], t] = s[live].to(buf.dtype)
        y = (s * _heads(C4[:, t], nheads)[:, :, None, :]).sum(-1)
        if D is not None:
            y = y + xt * (D if D.dim() == 2 else D.unsqueeze(0)).float()
        if z4 is not None:
            y = y * F.silu(z4[:, t].float())
        out4[:, t] = y.to(out4.dtype)
    if not disable_state_update:
        state4[slots[live]] = s[live].to(state4.dtype)


def _as_btpd(t: torch.Tensor) -> torch.Tensor:
    """Unsqueeze to 4-D the way the Triton wrapper does: `[b, d]` -> `[b, 1, 1, d]`, `[b, h, d]` -> `[b, 1, h, d]`."""
    if t.dim() == 2:
        t = t.unsqueeze(1)
    return t.unsqueeze(1) if t.dim() == 3 else t
