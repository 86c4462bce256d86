"""The Triton route's hooks (cpu_runtime/triton_route.py) without a server; tests/server/test_triton_route.py
serves through them."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from sglang_jenga.cpu_runtime import triton_route


def _args(**backends: str) -> SimpleNamespace:
    return SimpleNamespace(**{field: None for field in triton_route.BACKEND_FIELDS} | backends)


@pytest.mark.parametrize("backends", [{"attention_backend": "triton"}, {"decode_attention_backend": "triton"}])
def test_interpreter_is_turned_on_when_triton_is_asked(monkeypatch: pytest.MonkeyPatch, backends: dict) -> None:
    monkeypatch.delenv(triton_route.INTERPRET_ENV, raising=False)
    triton_route.interpret_if_asked(None, _args(**backends))
    assert os.environ[triton_route.INTERPRET_ENV] == "1"


def test_interpreter_is_left_alone_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(triton_route.INTERPRET_ENV, raising=False)
    triton_route.interpret_if_asked(None, _args(attention_backend="torch_native"))
    assert triton_route.INTERPRET_ENV not in os.environ
    monkeypatch.setenv(triton_route.INTERPRET_ENV, "0")  # an explicit choice stays
    triton_route.interpret_if_asked(None, _args(attention_backend="triton"))
    assert os.environ[triton_route.INTERPRET_ENV] == "0"


class _Mode:
    def __init__(self, decode: bool) -> None:
        self.decode = decode

    def is_decode_or_idle(self) -> bool:
        return self.decode


def _window_seen(decode: bool | None) -> int:
    """The window `update_sliding_window_buffer` receives for a 31-key radius, called from a metadata build
    of a decode (True) or extend (False) batch, or outside any build (None)."""
    seen: list[int] = []

    def update(indptr: Any, translator: Any, plan: Any, req_pool_indices: Any, window: int, *rest: Any) -> None:
        seen.append(window)

    def gather() -> None:
        triton_route.window_with_current_token(update, None, None, None, None, 31, "seq_lens", 1)

    if decode is None:
        gather()
    else:
        batch = SimpleNamespace(forward_mode=_Mode(decode))
        triton_route.decode_metadata(lambda backend, forward_batch: gather(), object(), batch)
    return seen[0]


def test_decode_window_includes_the_current_token() -> None:
    assert _window_seen(decode=True) == 32
    assert _window_seen(decode=False) == 31  # extend kernels mask per query: the radius is right there
    assert _window_seen(decode=None) == 31
