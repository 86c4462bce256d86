#!/usr/bin/env bash
# Set-up shared by the README's two commands: a virtual environment in .venv with sglang 0.5.23
# installed the CPU way (requirements/cpu.lock, then sglang without its GPU-only dependencies),
# this project in editable mode (its C part, sglang_jenga/core/_pages.c, built in place by the machine's
# C compiler), and the CPU runtime hook. Idempotent: a second run only compares a checksum and takes
# well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.8
SGLANG_VERSION=0.5.23
# The CPU build of torch 2.13.0 is not on PyPI. Machines of this project keep it in
# /opt/wheels; elsewhere it comes from PyTorch's CPU index.
TORCH_WHEELS=${JENGA_TORCH_WHEELS:-/opt/wheels}

stamp=.venv/.jenga-setup
want=$(cat requirements/cpu.lock pyproject.toml scripts/setup.sh sglang_jenga/core/_pages.c | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

echo "setup: creating .venv (CPU route: torch 2.13.0+cpu, sglang $SGLANG_VERSION without GPU packages)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
uv() { .venv/bin/uv pip "$@" --python .venv/bin/python; }
if [ -d "$TORCH_WHEELS" ]; then
  torch_source=(--find-links "$TORCH_WHEELS")
else
  torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
uv install -q "${torch_source[@]}" -r requirements/cpu.lock
uv install -q --no-deps "sglang==$SGLANG_VERSION"
uv install -q --no-deps -e .
.venv/bin/python -m sglang_jenga.cpu_runtime install >/dev/null
# Bytecode for everything installed: uv writes no .pyc files, and where PYTHONDONTWRITEBYTECODE is set (this
# project's machines) no import writes them either, so every sglang process compiled sglang from source:
# importing its scheduler took 19 s instead of 9 s, and a tiny server started in ~60 s instead of ~30 s.
# A speed-up only: a file that does not compile for Python 3.11 (torch's testing/_internal/py312_intrinsics.py)
# makes compileall exit 1, and nothing imports it.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
echo "$want" > "$stamp"
echo "setup: done" >&2
