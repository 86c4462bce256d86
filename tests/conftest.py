"""Shared fixtures: the tiny model zoo, built once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sglang_jenga.models import build


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`zoo(name)` -> directory of that tiny model, built on first use; `zoo("gemma3-recall")`: with the weights
    trained on the recall task (sglang_jenga.models.TRAINED)."""
    root = tmp_path_factory.mktemp("zoo")

    def get(name: str) -> Path:
        path = root / name
        model, trained = name.removesuffix("-recall"), name.endswith("-recall")
        return path if (path / "config.json").exists() else build(model, path, trained=trained)

    return get
