"""Imported at interpreter start by the CPU route's `.pth` file: installs the import hooks.

Cheap on purpose (no torch import here): it only puts two finders on `sys.meta_path`.
"""

from __future__ import annotations

import sys

from sglang_jenga.cpu_runtime.finders import SglKernelStandinFinder, TorchvisionOpsFinder


def install() -> None:
    """Put the finders in place once per interpreter."""
    if any(isinstance(f, TorchvisionOpsFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, TorchvisionOpsFinder())
    sys.meta_path.append(SglKernelStandinFinder())


install()
