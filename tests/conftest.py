"""Shared fixtures: the tiny model zoo, built once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sglang_jenga.models import build


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`zoo(name)` -> directory of that tiny model, built on first use."""
    root = tmp_path_factory.mktemp("zoo")

    def get(name: str) -> Path:
        path = root / name
        return path if (path / "config.json").exists() else build(name, path)

    return get
