"""The core imports nothing from sglang, torch, or the layers above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sglang_jenga.core

CORE = Path(sglang_jenga.core.__file__).parent
FORBIDDEN = ("sglang", "torch", "sglang_jenga.adapter", "sglang_jenga.plugin", "sglang_jenga.bench",
             "sglang_jenga.cpu_runtime")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_no_forbidden_imports_in_source() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 8
    bad = {f.name: n for f in files for n in _imports(f) if _forbidden(n)}
    assert not bad, bad


def test_importing_core_loads_neither_sglang_nor_torch() -> None:
    # measured against what the interpreter loaded before (a .pth may load the CPU runtime's import hooks)
    code = ("import sys; before = set(sys.modules); import sglang_jenga.core; "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = ast.literal_eval(out.stdout.strip())
    assert "sglang_jenga.core.radix" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("sglang", "torch")], loaded
    assert all(m.startswith("sglang_jenga.core") for m in loaded if m.startswith("sglang_jenga.")), loaded
    code = "import sys, sglang_jenga.core; print([m for m in ('sglang', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
