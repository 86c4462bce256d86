"""The two meta-path finders of the CPU runtime. Neither ever loads a module itself in place of
one that the regular finders can find."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

STANDIN_DIR = Path(__file__).with_name("sgl_kernel")


class SglKernelStandinFinder(importlib.abc.MetaPathFinder):
    """Serves `sgl_kernel` from the stand-in package, but only when asked last.

    Placed at the END of `sys.meta_path`: Python consults it only after every regular finder
    has failed to find a top-level `sgl_kernel`, i.e. when no real one is installed.
    Submodules (`sgl_kernel.x`) are then found by the regular path finder inside the stand-in.
    """

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "sgl_kernel":
            return None
        return importlib.util.spec_from_file_location(
            "sgl_kernel", STANDIN_DIR / "__init__.py", submodule_search_locations=[str(STANDIN_DIR)]
        )


class TorchvisionOpsFinder(importlib.abc.MetaPathFinder):
    """Defines torchvision's nms/qnms op schemas when its C++ ops failed to load.

    torchvision imports `extension` (which tries to load its C++ ops) and then
    `_autograd_registrations`; this finder runs when the latter is looked up, checks
    `torchvision.extension._has_ops()`, and defines the two schemas torchvision's Python code
    requires only if the real ops are missing. It never provides a module (returns None).
    """

    _TRIGGER = "torchvision._autograd_registrations"

    def __init__(self) -> None:
        self.done = False

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == self._TRIGGER and not self.done:
            self.done = True
            extension = sys.modules.get("torchvision.extension")
            if extension is not None and not extension._has_ops():
                from sglang_jenga.cpu_runtime.torchvision_ops import define_torchvision_ops

                define_torchvision_ops()
        return None
