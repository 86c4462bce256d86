"""How jenga's layer types reach sglang: one table from a type's cache policy to the sglang role it plays.

sglang 0.5.23 keeps four kinds of per-layer memory, each with its own pool and allocator pieces, and the
adapter builds the piece of each role over the one jenga buffer:

  TOKENS   the slots `req_to_token` holds, one per token: sglang's `MHATokenToKVPool` and token allocator.
           Every model has exactly one such type (full attention).
  PAIRED   one more slot per token, paired with the TOKENS slot through the allocator's
           `full_to_swa_index_mapping` and released once out of the window: the "swa" half of sglang's
           `SWAKVPool` and `SWATokenToKVPoolAllocator` (sliding-window and chunked-local attention).
  ENCODER  slots of a request's encoder (image) positions at the start of its row, freed by position:
           a typed pool over both types and the encoder-decoder allocator (cross-attention).
  STATE    one slot per request or cached checkpoint: the `MambaPool` of sglang's `HybridReqToTokenPool`
           (Mamba and linear attention).

A new layer type in the server is its core spec and policy (core/specs.py, core/policies.py) plus one row
here (`register_role`); build.py picks the sglang pieces by role (`build.POOLS`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

from sglang_jenga.core import ChunkedLocalSpec, LayerSpec, Layout, SlidingWindowSpec


class Role(enum.Enum):
    """The sglang memory a jenga layer type stands in for (module docstring)."""

    TOKENS = "tokens"
    PAIRED = "paired"
    ENCODER = "encoder"
    STATE = "state"


class RoleRow(NamedTuple):
    """One row of the table: the role, and for PAIRED types the window sglang releases by (tokens a step
    still reads behind the newest one: sglang's `sliding_window_size`)."""

    role: Role
    window_tokens: Callable[[LayerSpec], int] | None = None


def _window(spec: LayerSpec) -> int:
    assert isinstance(spec, SlidingWindowSpec)
    return spec.window


def _chunk(spec: LayerSpec) -> int:
    assert isinstance(spec, ChunkedLocalSpec)
    return spec.chunk  # a chunk's last token reads chunk - 1 tokens back; sglang's window is safe at chunk


ROLES: dict[str, RoleRow] = {
    "full": RoleRow(Role.TOKENS),
    "sliding_window": RoleRow(Role.PAIRED, _window),
    "chunked_local": RoleRow(Role.PAIRED, _chunk),
    "cross_attention": RoleRow(Role.ENCODER),
    "mamba": RoleRow(Role.STATE),
}


def register_role(policy: str, row: RoleRow) -> None:
    """Map the core policy `policy` to its sglang role. Raises ValueError if the policy has one."""
    if policy in ROLES:
        raise ValueError(f"policy {policy!r} already has the sglang role {ROLES[policy].role.value}")
    ROLES[policy] = row


def role_of(spec: LayerSpec) -> RoleRow:
    """The table row of `spec`'s policy. Raises ValueError naming the policy if it has none."""
    row = ROLES.get(spec.policy)
    if row is None:
        raise ValueError(f"layer type {spec.name!r} (policy {spec.policy!r}) has no sglang role; "
                         "add one with sglang_jenga.adapter.types.register_role")
    return row


class SglangTypes(NamedTuple):
    """A layout's type name in each sglang role (None where the model has none), read off the table.

    sglang's pools combine TOKENS with at most one other role, so a layout has one type per role at most and
    at most one besides TOKENS; `of` raises ValueError otherwise.
    """

    tokens: str
    paired: str | None = None
    encoder: str | None = None
    state: str | None = None
    window_tokens: int | None = None  # the PAIRED type's sglang window

    @classmethod
    def of(cls, layout: Layout) -> SglangTypes:
        names: dict[Role, str] = {}
        window = None
        for group in layout.model.groups:
            row = role_of(group.spec)
            if row.role in names:
                raise ValueError(f"types {names[row.role]!r} and {group.spec.name!r} both play sglang's "
                                 f"{row.role.value} role; sglang's pools hold one")
            names[row.role] = group.spec.name
            if row.window_tokens is not None:
                window = row.window_tokens(group.spec)
        if Role.TOKENS not in names:
            raise ValueError("sglang needs one full-attention type (the tokens role)")
        if len(names) > 2:
            raise ValueError(f"sglang's pools take the tokens role and one more, not {sorted(names.values())}")
        return cls(names[Role.TOKENS], names.get(Role.PAIRED), names.get(Role.ENCODER), names.get(Role.STATE),
                   window)

    @property
    def second(self) -> Role | None:
        """The role besides TOKENS, if any: which sglang pool and allocator the model gets."""
        for role, name in ((Role.PAIRED, self.paired), (Role.ENCODER, self.encoder), (Role.STATE, self.state)):
            if name is not None:
                return role
        return None
