"""CPU runtime: lets unmodified sglang 0.5.23 import and serve on a machine with no GPU.

sglang's PyPI dependencies assume CUDA: its kernel package `sgl_kernel` cannot be imported
without libcuda, and torchvision's PyPI wheel is a CUDA build whose C++ ops fail to load next
to a CPU torch, after which `import torchvision` dies on "operator torchvision::nms does not
exist". This package fixes both without touching sglang's or torchvision's files:

- `sgl_kernel/` is an import-compatible stand-in holding plain-torch versions of the kernels
  sglang's CPU path imports. It is served under the name `sgl_kernel` by a finder placed LAST
  on `sys.meta_path`, so a real sgl_kernel, wherever it is installed, always wins.
- Right after `torchvision.extension` has tried to load torchvision's C++ ops and failed, the
  `torchvision::nms` / `torchvision::qnms` schemas are defined with plain-torch kernels, which
  is what torchvision's own Python registrations need. If the ops loaded, nothing is done.

It is put in place only for CPU runs: `scripts/setup.sh` (the CPU route) writes a one-line
`.pth` file into the virtual environment that imports `sglang_jenga.cpu_runtime.boot`, so every
Python process of that environment (sglang spawns its scheduler and detokenizer as fresh
interpreters) gets it. The GPU route never writes that file. `install_pth` / `uninstall_pth`
manage it by hand.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

PTH_NAME = "sglang_jenga_cpu_runtime.pth"
PTH_LINE = "import sglang_jenga.cpu_runtime.boot\n"


def _site_packages() -> Path:
    return Path(site.getsitepackages([sys.prefix])[0])


def install_pth(site_packages: Path | None = None) -> Path:
    """Write the `.pth` hook into `site_packages` (default: this interpreter's). Idempotent."""
    path = (site_packages or _site_packages()) / PTH_NAME
    if not path.exists() or path.read_text() != PTH_LINE:
        path.write_text(PTH_LINE)
    return path


def uninstall_pth(site_packages: Path | None = None) -> None:
    """Remove the `.pth` hook if present."""
    (site_packages or _site_packages()).joinpath(PTH_NAME).unlink(missing_ok=True)
