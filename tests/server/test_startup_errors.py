"""`--memory-manager jenga` refuses what it cannot serve at start-up, with a message naming what to change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from serverkit import TINY_ARGS, server

from sglang_jenga.server import CPU_ARGS, ServerError

pytestmark = pytest.mark.slow


def test_help_lists_the_memory_manager_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--help"], capture_output=True, text=True,
                         timeout=300)
    assert "--memory-manager {default,jenga}" in out.stdout


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (("--enable-unified-memory",), "--enable-unified-memory"),
        (("--enable-hierarchical-cache",), "--enable-hierarchical-cache"),
        (("--page-size", "16"), "--page-size 16"),
        (("--radix-cache-backend", "flexkv"), "--radix-cache-backend flexkv"),
        (("--speculative-algorithm", "NGRAM"), "--speculative-algorithm"),
        (("--disaggregation-mode", "prefill"), "--disaggregation-mode prefill"),
        (("--disaggregation-mode", "decode"), "--disaggregation-mode decode"),
        (("--kv-cache-dtype", "fp8_e5m2"), "--kv-cache-dtype fp8_e5m2"),
        (("--mamba-radix-cache-strategy", "extra_buffer"), "--mamba-radix-cache-strategy extra_buffer"),
        (("--enable-int8-mamba-checkpoint",), "--enable-int8-mamba-checkpoint"),
    ],
)
def test_flag_combinations_are_rejected_before_anything_starts(zoo, flags: tuple[str, ...], names: str) -> None:  # noqa: ANN001
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(zoo("llama")), *CPU_ARGS,
           *TINY_ARGS, "--memory-manager", "jenga", *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"SGLANG_USE_CPU_ENGINE": "1",
                                                                                  "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "--memory-manager jenga cannot be combined with" in out.stderr and names in out.stderr, out.stderr[-2000:]


def test_unsupported_model_stops_startup_naming_it(zoo, tmp_path) -> None:  # noqa: ANN001
    """An mllama variant with more cross-attention than self-attention layers (4 of 6)."""
    model = tmp_path / "mllama_mostly_cross"
    shutil.copytree(zoo("mllama"), model)
    config = json.loads((model / "config.json").read_text())
    config["text_config"]["cross_attention_layers"] = [1, 2, 4, 5]
    (model / "config.json").write_text(json.dumps(config))
    s = server(model, "--memory-manager", "jenga")
    with pytest.raises(ServerError) as err:
        s.start()
    s.stop()
    message = str(err.value)
    assert "--memory-manager jenga cannot serve this configuration" in message
    assert "MllamaForConditionalGeneration has more cross-attention than self-attention layers" in message
    assert "--memory-manager default" in message
