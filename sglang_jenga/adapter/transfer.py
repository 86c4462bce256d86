"""PD disaggregation: the buffer descriptors jenga's pools give sglang's KV transfer, and the plan check.

Definitions. sglang's transfer (disaggregation/mooncake/conn.py `_send_kvcache_generic`, `_send_mamba_state`;
nixl's sender likewise) takes per entry a (ptr, nbytes, item_len) from the pool (`get_contiguous_buf_infos`, and
`get_state_buf_infos` for sliding-window and Mamba state), registers (ptr, nbytes) with the engine, and moves
item i as the bytes [ptr + i * item_len, ptr + (i + 1) * item_len), i a slot id (page size 1). sglang's own
MHA pool answers one entry per layer and K/V with item_len = heads x dim x elem, its rows packed back to back.

Cases. In jenga's buffer (buffer.py) row r of type T starts at byte r * row(T) from the buffer start, all the
type's layers in it (row(T) = token_bytes for attention types, the padded page for a state type). An entry is
correct only if item i is exactly slot i's row: ptr = buffer start, item_len = row(T). Any per-layer entry
(ptr + l * 2HDe) would move the head of row i + 1, another request's bytes on the destination. So each type
has ONE region over the whole buffer (`region`); all regions share (ptr, nbytes), so the engine registers
the buffer once: sglang's mooncake manager drops exact duplicates (`_registerable_regions`, as for its own
--enable-unified-memory pool, which answers the same way), and mooncake refuses any other overlap
("does not support overlapped memory region", seen with its 0.3.13 wheel), so per-type spans would not do.
(nixl registers every entry as given, duplicates included: not tried.) Regions of different types overlap
by design: the allocator never gives one byte to two types at once, and a transfer only names the slots the
request owns.

Worked example (the tests' swa rig): full 3 layers x 8 B = 24 B rows, sliding window 4 x 8 B = 32 B rows,
large page 96 B, 32 large pages + 1 reserved = 3168 B. Full slot 5 -> bytes [120, 144); SWA slot 5 ->
[160, 192). sglang's default answer for full layer 1's K is (base + 8, 528 B, 4 B): slot 5 -> [28, 32), in
full slot 1, and its 528 B cover one sixth of the rows.

How sglang consumes the entries (0.5.23):
  * KV (`get_contiguous_buf_infos`, every attention type that holds `req_to_token` slots): plain MHA peers
    publish no layer ids, so mooncake splits the entry list into K halves and V halves
    (`get_mha_kv_ptrs_with_pp`) and a single entry would move nothing. `kv_entries` therefore answers the
    type's region twice, as "K" and "V": each half moves whole rows, the second the same bytes again
    (correct; twice the traffic until a bring-up makes sglang take the flat path, e.g. with layer ids).
    A hybrid linear pool (Mamba models) publishes layer ids, which make mooncake pair entries by id without
    the split: it answers the region once (`one_entry`) with the first full layer's id (`kv_layer_ids`).
  * Sliding-window state (`get_state_buf_infos`, StateType.SWA): the paired type's two entries, indices
    from `translate_swa_indices_for_transfer` (the allocator's full -> SWA mapping); the same K/V split.
  * Mamba state (`get_state_buf_infos`, StateType.MAMBA): `one_entry` (buffer start, nbytes, page(state)),
    with no per-tensor dims or layer ids: a slot is moved whole, so both sides need the same TP size.
  * Cross-attention: sglang's transfer sends one index list for every entry, but a request's row mixes
    cross-attention slots (encoder positions) and full slots, whose rows differ in size: no entry list
    addresses both, so the typed pool refuses (`refuse_cross_attention`).
Precondition: the same plan and TP size on both sides (`plan_fingerprint`, `check_peer`).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from sglang_jenga.adapter.buffer import JengaBuffer
from sglang_jenga.core import Layout


class TransferRegion(NamedTuple):
    """One type's rows as a transfer entry: item i = slot i's row, at `ptr + i * item_bytes`."""

    type_name: str
    ptr: int
    nbytes: int
    item_bytes: int


class BufInfos(NamedTuple):
    """What sglang's `get_contiguous_buf_infos` / `get_state_buf_infos` return: parallel lists."""

    ptrs: list[int]
    nbytes: list[int]
    item_bytes: list[int]


class PlanMismatchError(RuntimeError):
    """The two PD peers run different jenga plans or TP sizes: their slots would not line up."""


def region(jenga: JengaBuffer, name: str) -> TransferRegion:
    """Type `name`'s region: the whole buffer, one item per row. Pure; O(1)."""
    stride = jenga.row_bytes(name)
    assert jenga.num_rows(name) * stride == jenga.nbytes, f"{name}: rows do not tile the buffer"
    return TransferRegion(name, jenga.data.data_ptr(), jenga.nbytes, stride)


def kv_entries(jenga: JengaBuffer, name: str) -> BufInfos:
    """A token type's KV entries: its region as the K half and again as the V half (module docstring)."""
    r = region(jenga, name)
    return BufInfos([r.ptr] * 2, [r.nbytes] * 2, [r.item_bytes] * 2)


def one_entry(jenga: JengaBuffer, name: str) -> BufInfos:
    """Type `name`'s region as one entry: for consumers that take entries one by one (a Mamba slot; KV paired
    by layer id)."""
    r = region(jenga, name)
    return BufInfos([r.ptr], [r.nbytes], [r.item_bytes])


def kv_layer_ids(full_layer_ids: list[int]) -> list[int]:
    """The layer id of a hybrid linear pool's one KV entry: its first full-attention layer's."""
    return [full_layer_ids[0]]


def refuse_cross_attention() -> BufInfos:
    """The typed pool's answer: raises NotImplementedError (module docstring, cross-attention)."""
    raise NotImplementedError(
        "--memory-manager jenga cannot describe cross-attention KV to sglang's PD transfer: one index list "
        "covers a request's encoder (cross-attention) and text (full-attention) slots, whose rows differ in size"
    )


def plan_fingerprint(layout: Layout, tp_size: int) -> str:
    """A digest of what decides where a slot's bytes lie: per type its spec (geometry, window), layer count, row
    and page bytes, pages per large page; the large page; the TP size. Two peers may exchange slots only if
    theirs are equal; the number of large pages may differ. Pure; 16 hex digits."""
    types = [(t.name, t.kind.value, t.num_layers, t.token_bytes, t.page_bytes, t.pages_per_large)
             for t in layout.types]
    specs = [repr(g.spec) for g in layout.model.groups]
    text = repr((tp_size, layout.tokens_per_page, layout.large_page_bytes, types, specs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pd_kv_layout(layout: Layout, tp_size: int) -> str:
    """The string for sglang's `KVArgs.kv_layout` (`get_pd_kv_layout`), which the bootstrap exchanges and the
    receiver compares (common/conn.py, "KV layout mismatch"). sglang skips that comparison when either side
    has none, so it does not catch a jenga peer paired with a default one; a bring-up must also refuse a peer
    without this string."""
    return "jenga:" + plan_fingerprint(layout, tp_size)


def check_peer(local: str, remote: str) -> None:
    """Raise PlanMismatchError unless the two peers' `plan_fingerprint`s are equal."""
    if local != remote:
        raise PlanMismatchError(
            f"PD peers run different jenga plans (fingerprint {local} here, {remote} on the peer): start both "
            "with the same model, --tp-size, --kv-cache-dtype and jenga settings"
        )
