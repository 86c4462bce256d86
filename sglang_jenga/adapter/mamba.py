"""Mamba / linear-attention state as a jenga layer type: sglang's state pool and slot allocator over
the shared buffer.

sglang keeps a hybrid model's recurrent state in `HybridReqToTokenPool.mamba_pool` (one slot per
request or cached checkpoint, all layers) and hands slots out with `mamba_allocator`, a free list
of a fixed size (`--max-mamba-cache-size`) that also caps running requests. Under jenga:

- `JengaMambaPool` is sglang's `MambaPool` whose conv and temporal tensors are views of the jenga
  buffer: slot s is small page s of the state type (adapter/types.py), laid out as sglang's own
  page-major envelope (`build_mamba_entry_views`: all layers' conv then temporal state of one slot,
  back to back; the page may be padded, see core/layout.py).
- `JengaMambaSlots` is the slot allocator: slots come from the shared large pages, as many as the
  buffer has room for at the moment; a slot freed returns its bytes to every type.
- `JengaHybridReqToTokenPool` is sglang's `HybridReqToTokenPool` built with the two, so the model's
  Mamba layers, copy-on-write of cached states and the scheduler's slot bookkeeping run unchanged.
- `JengaStateTokenAllocator` hands out the full-attention slots; its prefill budget charges each
  new request the bytes of its state, and counts the bytes that evicting cached states would free.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch

from sglang_jenga.adapter import transfer
from sglang_jenga.adapter.allocator import JengaTokenAllocator, TypeSlots, make_room
from sglang_jenga.adapter.buffer import JengaBuffer
from sglang_jenga.adapter.compat import MambaPoolHook, PrefillBudgetHook, sglang_classes
from sglang_jenga.core import OutOfPagesError

_sgl: Any = sglang_classes()  # sglang's classes, resolved at run time


def state_type(jenga: JengaBuffer) -> str:
    """The name of the layout's state type (the Mamba / linear-attention layers)."""
    assert jenga.types.state is not None, "a state pool built for a model without a state type"
    return jenga.types.state


def state_entry_bytes(cache_params: Any, num_layers: int) -> int:
    """Bytes of one slot (all layers, conv + temporal) in sglang's envelope layout."""
    return int(_sgl.mamba_entry_bytes(
        layer_num=num_layers, conv_state_shapes=cache_params.shape.conv, conv_dtype=cache_params.dtype.conv,
        temporal_state_shape=cache_params.shape.temporal, temporal_dtype=cache_params.dtype.temporal,
    ))


class JengaMambaPool(_sgl.MambaPool):
    """MambaPool over the state type's rows of the jenga buffer. `size` counts the slots in use plus those
    that fit now (the pool is shared, so there is no fixed slot count)."""

    def __init__(self, *, jenga: JengaBuffer, size: int, cache_params: Any, mamba_layer_ids: list[int],
                 **kwargs: Any) -> None:
        self._jenga, state = jenga, state_type(jenga)
        # sglang builds its tensors for one slot (size 0 + the padding slot); they are replaced below.
        super().__init__(size=0, cache_params=cache_params, mamba_layer_ids=mamba_layer_ids, **kwargs)
        conv, temporal = _sgl.build_mamba_entry_views(
            jenga.data, layer_num=len(mamba_layer_ids), conv_state_shapes=cache_params.shape.conv,
            conv_dtype=cache_params.dtype.conv, temporal_state_shape=cache_params.shape.temporal,
            temporal_dtype=cache_params.dtype.temporal, max_slots=jenga.num_rows(state),
            entry_bytes=jenga.row_bytes(state),
        )
        built: Any = getattr(self, "mamba_cache")  # noqa: B009 - sglang sets it; mypy cannot see its type
        self.mamba_cache: Any = dataclasses.replace(built, conv=conv, temporal=temporal)
        for cached in ("_conv_fuse_ok", "_conv_slot_desc"):  # computed on the replaced tensors
            self.__dict__.pop(cached, None)
        self.mem_usage = jenga.nbytes / (1 << 30)

    @property
    def size(self) -> int:
        slots = self._jenga.allocator.of(state_type(self._jenga))
        return slots.pages_used + slots.available()

    @size.setter
    def size(self, value: int) -> None:  # MambaPool.__init__ assigns it
        pass

    def get_kv_size_bytes(self) -> int:
        """The views overlap the whole buffer; the bytes are reported by the KV pool."""
        return 0

    # PD transfer (StateType.MAMBA, adapter/transfer.py): a slot is one item of the state type's region, moved
    # whole (no per-tensor dims or layer ids to reslice by, as sglang's unified-memory Mamba pool).
    def get_contiguous_buf_infos(self) -> tuple[list[int], list[int], list[int]]:
        return transfer.one_entry(self._jenga, state_type(self._jenga))

    def get_state_dim_per_tensor(self) -> list[int]:
        return []

    def get_state_layer_ids(self) -> list[int]:
        return []

    def get_state_slice_outer_counts(self) -> list[int]:
        return []

    def get_state_conv_shard_groups(self) -> list[Any]:
        return []


class JengaMambaSlots:
    """sglang's `MambaSlotAllocator` interface over the state type of the jenga buffer.

    An allocation that falls short evicts cached pages until it fits (so a slot is refused only when
    locked pages fill the buffer). `for_rows` says which requests the next slots are for (their
    placement owners); slots asked for outside it are the SHARED record's.
    """

    def __init__(self, jenga: JengaBuffer) -> None:
        self.jenga = jenga
        self.device = jenga.device
        self.slots = TypeSlots(jenga, state_type(jenga))
        self.rows: list[Callable[[], int | None]] = []

    @property
    def size(self) -> int:
        return self.slots.used() + self.slots.available_size()

    def available_size(self) -> int:
        return self.slots.available_size()

    def schedulable_available_size(self) -> int:
        return self.slots.available_size()

    def alloc_group_begin(self, num_reqs: int) -> None:
        """No pre-allocation: slots taken ahead would hold bytes other types may need."""

    def alloc_group_end(self) -> None:
        pass

    def alloc(self, need_size: int, row: int | None = None) -> torch.Tensor | None:
        if row is None and need_size == 1 and self.rows:
            row = self.rows.pop(0)()
        make_room(self.jenga, {self.slots.name: need_size})
        try:
            return self.slots.alloc(need_size, row)
        except OutOfPagesError:
            return None

    def free(self, free_index: torch.Tensor) -> None:
        self.slots.free(free_index.reshape(-1))

    def clear(self) -> None:
        """The buffer is cleared with the token allocator (every page must be free by then)."""


class JengaHybridReqToTokenPool(MambaPoolHook, _sgl.HybridReqToTokenPool):
    """HybridReqToTokenPool whose state pool and slot allocator are the jenga ones."""

    def __init__(self, *, jenga: JengaBuffer, **kwargs: Any) -> None:
        self._jenga = jenga
        self.mamba_pool_cls = functools.partial(JengaMambaPool, jenga=jenga)
        super().__init__(mamba_size=jenga.num_rows(state_type(jenga)) - 1, **kwargs)

    def after_mamba_pool_init(self) -> None:
        self.mamba_allocator = JengaMambaSlots(self._jenga)

    def alloc(self, reqs: list[Any]) -> Any:
        """sglang's row + state allocation; each new state slot is placed with its request's pages (rows are
        assigned before the states, so they are read when the slot is taken)."""
        slots = self.mamba_allocator
        slots.rows = [functools.partial(lambda r: r.kv.req_pool_idx, req) for req in reqs if not req.kv.holds_mamba]
        try:
            return super().alloc(reqs)
        finally:
            slots.rows = []

    def schedulable_token_capacity(self, physical_capacity: int) -> int:
        """Full-attention tokens held plus those that fit now: the capacity sglang's pool accounting
        balances against (states and tokens share the buffer)."""
        full = self._jenga.allocator.of(self._jenga.types.tokens)
        return full.pages_used + full.available()


class JengaHybridLinearKVPool(_sgl.HybridLinearKVPool):
    """sglang's HybridLinearKVPool over the tokens type's `JengaMHAPool` and the `JengaMambaPool`. For PD it
    answers the tokens type's region as one KV entry with one layer id (sglang pairs entries by id, so the
    region moves once; adapter/transfer.py)."""

    def get_contiguous_buf_infos(self) -> tuple[list[int], list[int], list[int]]:
        return self.full_kv_pool.one_transfer_entry()

    def get_kv_layer_ids(self) -> list[int]:
        return transfer.kv_layer_ids(list(self.full_attention_layer_id_mapping))


def state_token_cost(jenga: JengaBuffer, states: int) -> int:
    """Full-attention slots displaced by `states` new state slots: the large pages they need beyond the
    state slots already carved, in full-attention slots."""
    needed = jenga.manager.plan({state_type(jenga): states}).large_pages_needed
    return needed * jenga.layout.type(jenga.types.tokens).pages_per_large


def evictable_state_tokens(jenga: JengaBuffer) -> int:
    """Full-attention slots that evicting every unlocked cached state would free at least."""
    tokens_per_large = jenga.layout.type(jenga.types.tokens).pages_per_large
    return jenga.manager.evictable_large_pages((state_type(jenga),)) * tokens_per_large


class JengaStateTokenAllocator(JengaTokenAllocator):
    """Full-attention slots of a model whose other layers keep a recurrent state (the state type)."""

    def evict_to_free_tokens(self, tree_cache: Any, num_tokens: int) -> bool:
        """Evict until `num_tokens` full-attention slots can be allocated; returns whether they can."""
        return make_room(self.jenga, {self.slots.name: num_tokens})

    def check_decode_capacity(self, *, num_tokens: int, tree_cache: Any, requests: Any = None,
                              spec_algorithm: Any = None) -> bool:
        return self.evict_to_free_tokens(tree_cache, num_tokens)

    def create_prefill_budget(self, tree_cache: Any, *, num_mixed_decode_tokens: int = 0) -> Any:
        return StatePrefillBudget(self, tree_cache, num_mixed_decode_tokens=num_mixed_decode_tokens)


class StatePrefillBudget(PrefillBudgetHook, _sgl.PrefillBudget):
    """sglang's token budget for one prefill batch, with each admitted request's state slot charged
    in the full-attention slots it displaces, and the bytes of evictable cached states counted; and a
    request is admitted only if the batch's tokens and states fit the shared pool together (full slots
    free inside a running request's large pages cannot hold a state, so the token count alone over-admits)."""

    def __init__(self, allocator: JengaStateTokenAllocator, tree_cache: Any, **kwargs: Any) -> None:
        super().__init__(allocator, tree_cache, **kwargs)
        self.jenga = allocator.jenga
        self.new_states = 0

    def available_and_evictable(self, tokens: int) -> int:
        if self.tree_cache.supports_prefix_sharing():
            tokens += evictable_state_tokens(self.jenga)
        return tokens - state_token_cost(self.jenga, self.new_states)

    def _next_state(self) -> int:
        return state_token_cost(self.jenga, self.new_states + 1) - state_token_cost(self.jenga, self.new_states)

    def _fits_with_next(self, tokens: int) -> bool:
        """Whether `tokens` more full-attention slots (beyond the batch's reservations) and one more state
        fit together after evicting what the tree could give back (an evicted page serves its own type)."""
        tree, types = self.tree_cache, self.jenga.types
        full = int(tokens + self.total_offset) - tree.full_evictable_size()
        states = self.new_states + 1 - tree.mamba_evictable_size()
        return self.jenga.manager.fits({types.tokens: max(0, full), state_type(self.jenga): max(0, states)})

    def check_prefill(self, *, total_tokens: int, **kwargs: Any) -> tuple[bool, int | None]:
        if not self._fits_with_next(total_tokens):
            return False, None
        return super().check_prefill(total_tokens=total_tokens + self._next_state(), **kwargs)

    def can_allocate_prefill(self, *, paged_input: int, **kwargs: Any) -> bool:
        return self._fits_with_next(paged_input) and bool(
            super().can_allocate_prefill(paged_input=paged_input + self._next_state(), **kwargs))

    def reserve(self, extend_input_len: int, max_new_tokens: int, *, is_chunked_continuation: bool = False,
                **kwargs: Any) -> None:
        super().reserve(extend_input_len, max_new_tokens, is_chunked_continuation=is_chunked_continuation, **kwargs)
        if not is_chunked_continuation:
            self.new_states += 1
