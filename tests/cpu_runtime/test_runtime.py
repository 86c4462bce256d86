"""The CPU runtime's import hooks: active where needed, inert where a real package exists."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sglang_jenga.cpu_runtime import PTH_LINE, PTH_NAME, install_pth, uninstall_pth
from sglang_jenga.cpu_runtime.finders import STANDIN_DIR
from sglang_jenga.cpu_runtime.torchvision_ops import nms


def _run(code: str, pythonpath: Path | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pth_hook_is_installed_in_this_environment() -> None:
    import site

    pth = Path(site.getsitepackages()[0]) / PTH_NAME
    assert pth.read_text() == PTH_LINE


def test_install_and_uninstall_pth(tmp_path: Path) -> None:
    path = install_pth(tmp_path)
    assert path.read_text() == PTH_LINE
    install_pth(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [PTH_NAME]
    uninstall_pth(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_standin_served_when_no_real_sgl_kernel() -> None:
    origin = _run("import sgl_kernel; print(sgl_kernel.__file__)")
    assert Path(origin) == STANDIN_DIR / "__init__.py"


def test_real_sgl_kernel_wins(tmp_path: Path) -> None:
    """A real sgl_kernel anywhere on the path shadows the stand-in (the finder is asked last)."""
    real = tmp_path / "sgl_kernel"
    real.mkdir()
    (real / "__init__.py").write_text("REAL = True\n")
    (real / "ops.py").write_text("X = 1\n")
    out = _run("import sgl_kernel, sgl_kernel.ops; print(sgl_kernel.REAL, sgl_kernel.ops.__file__)", tmp_path)
    assert out == f"True {real / 'ops.py'}"


def test_torchvision_imports_and_nms_op_works() -> None:
    out = _run(
        """
        import torch, torchvision
        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
        scores = torch.tensor([0.9, 0.8, 0.7])
        print(torch.ops.torchvision.nms(boxes, scores, 0.5).tolist())
        """
    )
    assert out == "[0, 2]"


def test_torchvision_fix_is_inert_when_its_ops_load(tmp_path: Path) -> None:
    """A torchvision whose C++ ops loaded gets no schema from us (it would clash with its own)."""
    tv = tmp_path / "torchvision"
    tv.mkdir()
    (tv / "extension.py").write_text("def _has_ops():\n    return True\n")
    (tv / "_autograd_registrations.py").write_text("")
    (tv / "__init__.py").write_text("from . import extension\nfrom . import _autograd_registrations\n")
    out = _run("import torch, torchvision; print(hasattr(torch.ops.torchvision, 'nms'))", tmp_path)
    assert out == "False"


def _reference_nms(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(40, 2, generator=g) * 50
    wh = torch.rand(40, 2, generator=g) * 20 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(40, generator=g)
    got = nms(boxes, scores, 0.3).tolist()
    assert got == _reference_nms(boxes.tolist(), scores.tolist(), 0.3)


def test_nms_empty() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
