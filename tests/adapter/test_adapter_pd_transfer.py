"""PD disaggregation at the pool level: one jenga pool's KV and states copied into another's through the
descriptors the pools give sglang (adapter/transfer.py), by sglang's own transfer code.

The prefill and decode sides are two rigs (adapterkit) with different budgets. Their `KVArgs` are built as
sglang's PD bootstrap builds them (disaggregation/prefill.py: `get_kv_transfer_buf_infos`,
`build_kv_layer_ids`, `setup_state_kv_args`). The copy runs sglang's mooncake sender
(`MooncakeKVManager._send_kvcache_generic` for KV and the sliding-window state, `_send_mamba_state` for Mamba
state), which computes every `ptr + index * item_len`; only its engine is replaced, by a loopback that
memmoves the bytes between the two buffers of this process, as mooncake's TCP transport would between hosts;
where mooncake's engine imports (its non-CUDA wheel), the same copy also runs through two real TCP engines.
The indices are the ones sglang's PD payloads send: the request's `req_to_token` slots, the sliding-window
tail through `translate_swa_indices_for_transfer`, the request's Mamba slot.

Checked: the destination's per-layer views hold the source's values at the mapped slots, every other byte of
the destination is unchanged, a decode step's attention over both is equal; with sglang's default
descriptors over jenga's views (the behaviour before) the same copy moves wrong bytes.
"""

from __future__ import annotations

import ctypes
import types
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from adapterkit import GEO, MAMBA, Rig, _make_layers, _make_req, _make_rig, _make_rig_of, admit, extend, row
from sglang.srt.disaggregation.base.conn import StateType
from sglang.srt.disaggregation.common.conn import CommonKVManager
from sglang.srt.disaggregation.mooncake.conn import MooncakeKVManager
from sglang.srt.disaggregation.utils import build_kv_layer_ids, get_kv_transfer_buf_infos, setup_state_kv_args
from sglang.srt.mem_cache.memory_pool import HybridLinearKVPool, MambaPool, MHATokenToKVPool

from sglang_jenga.adapter import transfer
from sglang_jenga.adapter.mamba import JengaHybridLinearKVPool, JengaMambaPool
from sglang_jenga.adapter.pool import JengaMHAPool
from sglang_jenga.core import FullAttentionSpec

PROMPT = list(range(10, 20))  # 10 tokens: longer than the swa rig's window (4)
PD_FAMILIES = ["full", "swa", "mamba"]


def _make_family(family: str, num_large: int) -> Rig:
    """adapterkit's rigs, plus "full": full attention only (3 layers, 24 B/token), sglang's MHA pool role."""
    if family == "full":
        return _make_rig_of("full", _make_layers((FullAttentionSpec(**GEO), [0, 1, 2])), num_large, req_slots=8)
    return _make_rig(family, num_large=num_large)


class _Loopback:
    """sglang's mooncake sender with only what its send functions read; `_transfer_data` (the engine call)
    copies each (src, dst, length) block between addresses of this process."""

    is_mla_backend = is_hybrid_mla_backend = False
    pp_size = 1
    enable_custom_mem_pool = False
    custom_mem_pool_type = None
    max_transfer_batch_indices = 0
    get_mha_kv_ptrs_with_pp = CommonKVManager.get_mha_kv_ptrs_with_pp
    get_mla_kv_ptrs_with_pp = CommonKVManager.get_mla_kv_ptrs_with_pp
    _state_stride_mismatch = MooncakeKVManager._state_stride_mismatch
    send_kv = MooncakeKVManager._send_kvcache_generic
    send_mamba = MooncakeKVManager._send_mamba_state

    def __init__(self, kv_args: Any) -> None:
        self.kv_args = kv_args
        self.state_strides_validated: set[str] = set()
        self.blocks: list[tuple[int, int, int]] = []

    def _transfer_data(self, session: str, blocks: list[tuple[int, int, int]]) -> int:
        for src, dst, length in blocks:
            ctypes.memmove(dst, src, length)
        self.blocks += blocks
        return 0


class _Mooncake(_Loopback):
    """The same sender over real mooncake engines (TCP transport, host memory): each side registers its regions
    as sglang's MooncakeKVManager does (`_registerable_regions`, exact duplicates removed; mooncake refuses
    overlapping ones), and the blocks go through `batch_transfer_sync_write` to the peer's session."""

    _registerable_regions = MooncakeKVManager._registerable_regions

    def __init__(self, kv_args: Any, engine: Any, peer: str) -> None:
        super().__init__(kv_args)
        self.engine, self.peer = engine, peer

    def _transfer_data(self, session: str, blocks: list[tuple[int, int, int]]) -> int:
        srcs, dsts, lengths = (list(x) for x in zip(*blocks, strict=True))
        self.blocks += blocks
        return int(self.engine.batch_transfer_sync_write(self.peer, srcs, dsts, lengths))


def _mooncake_engine(engine_cls: Any, kv_args: Any) -> tuple[Any, str]:
    """A TCP engine on this host with `kv_args`' regions registered; returns it and its session id."""
    engine = engine_cls()
    assert engine.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    for ptr, length in _Mooncake._registerable_regions(types.SimpleNamespace(kv_args=kv_args)):
        assert engine.register_memory(ptr, length) == 0
    return engine, f"127.0.0.1:{engine.get_rpc_port()}"


class Side(NamedTuple):
    """One PD peer: its rig, the request whose KV moves, and its KVArgs."""

    rig: Rig
    req: Any
    kv_args: Any


def _kv_args(rig: Rig) -> Any:
    """The transfer fields of sglang's KVArgs, built by sglang's functions (disaggregation/prefill.py)."""
    pool = rig.allocator.get_kvcache()
    args = types.SimpleNamespace(prefill_start_layer=0, num_draft_entries=0, aux_data_ptrs=[], aux_data_lens=[])
    args.kv_data_ptrs, args.kv_data_lens, args.kv_item_lens = get_kv_transfer_buf_infos(pool)
    args.kv_layer_ids = build_kv_layer_ids(token_to_kv_pool=pool, draft_token_to_kv_pool=None, num_draft_entries=0,
                                           num_hidden_layers=8)
    setup_state_kv_args(args, pool, req_to_token_pool=rig.req_pool)
    return args


def _side(family: str, num_large: int, before: list[int] | None = None) -> Side:
    """A rig whose buffer is random finite bf16, holding PROMPT's KV (after `before`'s, to shift its slots)."""
    rig = _make_family(family, num_large)
    gen = torch.Generator().manual_seed(num_large)
    data = rig.jenga.data
    data.view(torch.bfloat16).copy_(torch.randn(data.numel() // 2, generator=gen).to(torch.bfloat16))
    if before:
        other = _make_req(rig, before)
        admit(rig, other)
        extend(rig, [(other, len(before))])
    req = _make_req(rig, PROMPT)
    admit(rig, req)
    extend(rig, [(req, len(PROMPT))])
    return Side(rig, req, _kv_args(rig))


def _pair(family: str) -> tuple[Side, Side]:
    """Prefill side (32 large pages) and decode side (40, another request first): the slots differ."""
    return _side(family, 32), _side(family, 40, before=[1, 2, 3, 4, 5, 6, 7])


def _full_slots(side: Side) -> list[int]:
    return row(side.rig, side.req, 0, len(PROMPT))


def _swa_slots(side: Side) -> list[int]:
    """The window's SWA slots, as sglang's `_swa_payload` on both sides (window start .. sequence end)."""
    start = max(0, len(PROMPT) - side.rig.window)
    full = torch.tensor(_full_slots(side)[start:], dtype=torch.int64)
    return side.rig.allocator.translate_swa_indices_for_transfer(full).tolist()


def _mamba_slot(side: Side) -> int:
    return int(side.req.kv.mamba_pool_idx)


def _np(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int32)


def _send(src: Side, dst: Side, slots: dict[str, tuple[list[int], list[int]]],
          sender: _Loopback | None = None) -> _Loopback:
    """The prefill sender's calls for one request (mooncake `transfer_worker`: KV, then each state component)."""
    sender = sender or _Loopback(src.kv_args)
    a, b = src.kv_args, dst.kv_args
    full = src.rig.jenga.types.tokens
    assert sender.send_kv("s", a.kv_data_ptrs, b.kv_data_ptrs, a.kv_item_lens, _np(slots[full][0]),
                          _np(slots[full][1]), None, src_layer_ids=a.kv_layer_ids, dst_layer_ids=b.kv_layer_ids) == 0
    for i, state in enumerate(a.state_types):
        if state is StateType.SWA:
            name = src.rig.jenga.types.paired
            rc = sender.send_kv("s", a.state_data_ptrs[i], b.state_data_ptrs[i], a.state_item_lens[i],
                                _np(slots[name][0]), _np(slots[name][1]), None, state_type=state,
                                src_layer_ids=a.state_layer_ids[i], dst_layer_ids=b.state_layer_ids[i],
                                dst_item_lens=b.state_item_lens[i], bootstrap_room=0)
        else:
            assert state is StateType.MAMBA
            rc = sender.send_mamba(types.SimpleNamespace(mooncake_session_id="s"), slots[MAMBA][0],
                                   a.state_data_ptrs[i], a.state_item_lens[i], b.state_data_ptrs[i], slots[MAMBA][1],
                                   a.state_layer_ids[i], b.state_layer_ids[i], b.state_item_lens[i])
        assert rc == 0
    return sender


def _mapped(src: Side, dst: Side) -> dict[str, tuple[list[int], list[int]]]:
    """Per type: the source slots and the destination slots sglang's payloads name."""
    jenga = src.rig.jenga
    out = {jenga.types.tokens: (_full_slots(src), _full_slots(dst))}
    if jenga.types.paired:
        out[jenga.types.paired] = (_swa_slots(src), _swa_slots(dst))
    if jenga.types.state:
        out[MAMBA] = ([_mamba_slot(src)], [_mamba_slot(dst)])
    return out


def _expected(src: Side, dst_before: torch.Tensor, slots: dict[str, tuple[list[int], list[int]]]) -> torch.Tensor:
    """The destination buffer after a correct copy: its old bytes, the source's rows at the mapped slots."""
    out, layout = dst_before.clone(), src.rig.jenga.layout
    for name, (s, d) in slots.items():
        stride = layout.row_stride_bytes(name)
        for i, j in zip(s, d, strict=True):
            out[j * stride:(j + 1) * stride] = src.rig.jenga.data[i * stride:(i + 1) * stride]
    return out


def _kv_views(side: Side) -> dict[str, Any]:
    """Per attention type, its sglang pool (k_buffer / v_buffer per layer)."""
    pool = side.rig.allocator.get_kvcache()
    if hasattr(pool, "swa_kv_pool"):
        return {side.rig.jenga.types.tokens: pool.full_kv_pool, side.rig.jenga.types.paired: pool.swa_kv_pool}
    return {side.rig.jenga.types.tokens: getattr(pool, "full_kv_pool", pool)}


def _assert_views_equal(src: Side, dst: Side, slots: dict[str, tuple[list[int], list[int]]]) -> None:
    for name, pool in _kv_views(src).items():
        other = _kv_views(dst)[name]
        s, d = (torch.tensor(x) for x in slots[name])
        for layer in range(pool.layer_num):
            assert torch.equal(other.k_buffer[layer][d], pool.k_buffer[layer][s]), (name, layer, "K")
            assert torch.equal(other.v_buffer[layer][d], pool.v_buffer[layer][s]), (name, layer, "V")
    if MAMBA in slots:
        (s,), (d,) = slots[MAMBA]
        a, b = src.rig.req_pool.mamba_pool.mamba_cache, dst.rig.req_pool.mamba_pool.mamba_cache
        for conv_a, conv_b in zip(a.conv, b.conv, strict=True):
            assert torch.equal(conv_b[:, d], conv_a[:, s])
        assert torch.equal(b.temporal[:, d], a.temporal[:, s])


def _decode_attention(pool: Any, layer: int, slots: list[int], q: torch.Tensor) -> torch.Tensor:
    """One decode step's attention of query `q` [heads, dim] over `slots` of one layer (plain torch)."""
    idx = torch.tensor(slots)
    k, v = pool.k_buffer[layer][idx].float(), pool.v_buffer[layer][idx].float()  # [n, heads, dim]
    scores = torch.einsum("hd,nhd->hn", q, k) / q.shape[-1] ** 0.5
    return torch.einsum("hn,nhd->hd", scores.softmax(-1), v)


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("family", PD_FAMILIES)
def test_loopback_copies_exactly_the_mapped_rows(family: str) -> None:
    src, dst = _pair(family)
    slots = _mapped(src, dst)
    assert slots[src.rig.jenga.types.tokens][0] != slots[src.rig.jenga.types.tokens][1]  # the slots differ
    before = dst.rig.jenga.data.clone()
    sender = _send(src, dst, slots)
    assert torch.equal(dst.rig.jenga.data, _expected(src, before, slots))  # mapped rows copied, nothing else
    layout = src.rig.jenga.layout  # rows go twice (the K and the V entry) unless paired by layer id (Mamba models)
    copies = {name: 1 if family == "mamba" else 2 for name in slots} | {MAMBA: 1}
    moved = sum(len(s) * layout.row_stride_bytes(name) * copies[name] for name, (s, _) in slots.items())
    assert sum(length for _, _, length in sender.blocks) == moved
    _assert_views_equal(src, dst, slots)


@pytest.mark.parametrize("family", PD_FAMILIES)
def test_loopback_through_mooncake_tcp(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same copy by mooncake's own engine, where it imports (the non-CUDA wheel on a CPU host; README)."""
    engine_cls = pytest.importorskip("mooncake.engine", reason="mooncake transfer engine not installed").TransferEngine
    monkeypatch.setenv("MC_FORCE_TCP", "1")
    src, dst = _pair(family)
    slots = _mapped(src, dst)
    before = dst.rig.jenga.data.clone()
    (engine, _), (peer, session) = _mooncake_engine(engine_cls, src.kv_args), _mooncake_engine(engine_cls, dst.kv_args)
    _send(src, dst, slots, _Mooncake(src.kv_args, engine, session))
    del engine, peer
    assert torch.equal(dst.rig.jenga.data, _expected(src, before, slots))
    _assert_views_equal(src, dst, slots)


def test_sglang_sees_the_roles_it_expects() -> None:
    """sglang's PD set-up files the sliding-window entries as StateType.SWA and the Mamba slot as MAMBA, and
    every entry registers the one buffer (mooncake registers it once)."""
    full, swa, mamba = (_pair(family)[0] for family in PD_FAMILIES)
    assert full.kv_args.state_types == [] and full.kv_args.kv_item_lens == [24, 24]
    assert swa.kv_args.state_types == [StateType.SWA] and mamba.kv_args.state_types == [StateType.MAMBA]
    for side in (full, swa, mamba):
        a, jenga = side.kv_args, side.rig.jenga
        regions = {(p, n) for p, n in zip(a.kv_data_ptrs, a.kv_data_lens, strict=True)}
        regions |= {(p, n) for ps, ns in zip(a.state_data_ptrs, a.state_data_lens, strict=True)
                    for p, n in zip(ps, ns, strict=True)}
        assert regions == {(jenga.data.data_ptr(), jenga.nbytes)}
    layout = swa.rig.jenga.layout
    assert swa.kv_args.kv_item_lens == [layout.row_stride_bytes("full")] * 2 == [24, 24]
    assert swa.kv_args.state_item_lens == [[32, 32]]
    assert mamba.kv_args.kv_item_lens == [8] and mamba.kv_args.kv_layer_ids == [1]  # the mamba rig's full layer
    assert mamba.kv_args.state_item_lens == [[mamba.rig.jenga.layout.row_stride_bytes(MAMBA)]]


def test_decode_attention_over_the_copy_matches() -> None:
    src, dst = _pair("swa")
    slots = _mapped(src, dst)
    _send(src, dst, slots)
    q = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    for name, pool in _kv_views(src).items():
        s, d = slots[name]
        for layer in range(pool.layer_num):
            out = _decode_attention(pool, layer, s, q)
            assert torch.equal(_decode_attention(_kv_views(dst)[name], layer, d, q), out)


@pytest.mark.parametrize("family", PD_FAMILIES)
def test_sglang_default_descriptors_move_wrong_bytes(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: jenga's pools answered with sglang's own descriptors (one entry per layer, rows packed); the same
    copy then leaves the mapped rows wrong and writes other bytes."""
    monkeypatch.setattr(JengaMHAPool, "get_contiguous_buf_infos", MHATokenToKVPool.get_contiguous_buf_infos)
    for name in ("get_contiguous_buf_infos", "get_kv_layer_ids"):
        monkeypatch.setattr(JengaHybridLinearKVPool, name, getattr(HybridLinearKVPool, name))
    for name in ("get_contiguous_buf_infos", "get_state_dim_per_tensor", "get_state_layer_ids",
                 "get_state_slice_outer_counts", "get_state_conv_shard_groups"):
        monkeypatch.setattr(JengaMambaPool, name, getattr(MambaPool, name))
    src, dst = _pair(family)
    slots = _mapped(src, dst)
    before = dst.rig.jenga.data.clone()
    _send(src, dst, slots)
    with pytest.raises(AssertionError):
        _assert_views_equal(src, dst, slots)
    assert not torch.equal(dst.rig.jenga.data, _expected(src, before, slots))


def test_cross_attention_pool_refuses() -> None:
    rig = _make_rig("cross")
    with pytest.raises(NotImplementedError, match="cross-attention"):
        get_kv_transfer_buf_infos(rig.allocator.get_kvcache())


def test_plan_fingerprint() -> None:
    """Equal for the same model and TP size whatever the budget; different for another TP size or geometry."""
    a, b = _make_rig("swa", num_large=32).jenga, _make_rig("swa", num_large=40).jenga
    fp = transfer.plan_fingerprint(a.layout, tp_size=1)
    assert fp == transfer.plan_fingerprint(b.layout, tp_size=1)
    transfer.check_peer(fp, transfer.plan_fingerprint(b.layout, tp_size=1))
    others = [transfer.plan_fingerprint(a.layout, tp_size=2),
              transfer.plan_fingerprint(_make_rig("swa", window=8).jenga.layout, tp_size=1),
              transfer.plan_fingerprint(_make_rig("mamba").jenga.layout, tp_size=1)]
    assert fp not in others and len(set(others)) == 3
    with pytest.raises(transfer.PlanMismatchError, match="different jenga plans"):
        transfer.check_peer(fp, others[0])
    assert transfer.pd_kv_layout(a.layout, tp_size=1) == f"jenga:{fp}"
