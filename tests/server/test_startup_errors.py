"""`--memory-manager jenga` refuses what it cannot serve at start-up, with a message naming what to change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serverkit import MAMBA_ARGS, TINY_ARGS

from sglang_jenga.server import CPU_ARGS

pytestmark = pytest.mark.slow


REFUSED = [
    (("--enable-unified-memory",), "--enable-unified-memory"),
    (("--enable-hierarchical-cache",), "--enable-hierarchical-cache"),
    (("--radix-cache-backend", "flexkv"), "--radix-cache-backend flexkv"),
    (("--speculative-algorithm", "DFLASH"), "--speculative-algorithm DFLASH (jenga serves EAGLE, EAGLE3"),
    (("--speculative-algorithm", "EAGLE"), "--speculative-algorithm EAGLE without --speculative-draft-model-path"),
    (("--disaggregation-mode", "prefill"), "--disaggregation-mode prefill"),
    (("--disaggregation-mode", "decode"), "--disaggregation-mode decode"),
    (("--kv-cache-dtype", "fp8_e5m2"), "--kv-cache-dtype fp8_e5m2"),
    (("--mamba-radix-cache-strategy", "extra_buffer"), "--mamba-radix-cache-strategy extra_buffer"),
    (("--enable-int8-mamba-checkpoint",), "--enable-int8-mamba-checkpoint"),
]


def _mostly_cross_mllama(zoo, root: Path) -> Path:  # noqa: ANN001
    """An mllama variant with more cross-attention than self-attention layers (4 of 6)."""
    model = root / "mllama_mostly_cross"
    shutil.copytree(zoo("mllama"), model)
    config = json.loads((model / "config.json").read_text())
    config["text_config"]["cross_attention_layers"] = [1, 2, 4, 5]
    (model / "config.json").write_text(json.dumps(config))
    return model


# The refused flag sets are parsed in one interpreter (sglang's import is most of a launch), the way
# `python -m sglang.launch_server` does before anything starts: load_plugins(), then prepare_server_args().
CHECK_FLAGS = """
import json, sys
from sglang.srt.plugins import load_plugins
from sglang.srt.server_args import prepare_server_args

load_plugins()
out = []
for argv in json.loads(sys.argv[1]):
    try:
        prepare_server_args(argv)
        out.append({"exited": False, "message": ""})
    except SystemExit as e:
        out.append({"exited": True, "message": str(e.code)})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def launches(zoo, tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:  # noqa: ANN001
    """`python -m sglang.launch_server --help`, jenga on a model it cannot serve and on a Mamba hybrid under
    --pp-size 2 (real launches, two side by side), plus every refused flag set through launch_server's own parsing
    steps in one interpreter: results keyed by the extra arguments (refused flag sets: returncode 1 and the exit
    message as stderr if it exited)."""
    base = [*CPU_ARGS, *TINY_ARGS, "--memory-manager", "jenga"]
    env = {"SGLANG_USE_CPU_ENGINE": "1", "PATH": "/usr/bin:/bin"}
    llama = ("--model-path", str(zoo("llama")))
    unsupported = ("--model-path", str(_mostly_cross_mllama(zoo, tmp_path_factory.mktemp("models"))))
    launch = [sys.executable, "-m", "sglang.launch_server"]
    flag_sets = [[*base, *llama, *flags] for flags, _ in REFUSED]
    mamba_pp = ("--model-path", str(zoo("nemotron_h")), *MAMBA_ARGS, "--pp-size", "2")
    cmds = {("--help",): [*launch, "--help"], unsupported: [*launch, *base, *unsupported],
            mamba_pp: ["env", "SGLANG_CPU_OMP_THREADS_BIND=0|1", *launch, *base, *mamba_pp],  # a core per stage
            ("refused",): [sys.executable, "-c", CHECK_FLAGS, json.dumps(flag_sets)]}

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    with ThreadPoolExecutor(2) as pool:
        out = dict(zip(cmds, pool.map(run, cmds.values()), strict=True))
    out[("unsupported model",)] = out.pop(unsupported)
    out[("mamba under pp",)] = out.pop(mamba_pp)
    checked = out.pop(("refused",))
    assert checked.returncode == 0, checked.stderr[-3000:]
    for (flags, _), result in zip(REFUSED, json.loads(checked.stdout.strip().splitlines()[-1]), strict=True):
        out[flags] = subprocess.CompletedProcess(flags, int(result["exited"]), "", result["message"])
    return out


def test_help_lists_the_memory_manager_flag(launches) -> None:  # noqa: ANN001
    assert "--memory-manager {default,jenga}" in launches[("--help",)].stdout


@pytest.mark.parametrize(("flags", "names"), REFUSED)
def test_flag_combinations_are_rejected_before_anything_starts(launches, flags: tuple[str, ...], names: str) -> None:  # noqa: ANN001
    out = launches[flags]
    assert out.returncode != 0
    assert "--memory-manager jenga cannot be combined with" in out.stderr and names in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize(("launch", "phrases"), [
    ("unsupported model", ("MllamaForConditionalGeneration has more cross-attention than self-attention layers",
                           "--memory-manager default")),
    ("mamba under pp", ("--pp-size with NemotronHForCausalLM's Mamba/linear-attention layers",)),
])
def test_unservable_configuration_stops_startup_naming_it(launches, launch: str,  # noqa: ANN001
                                                          phrases: tuple[str, ...]) -> None:
    out = launches[(launch,)]
    assert out.returncode != 0
    message = out.stderr
    assert "--memory-manager jenga cannot serve this configuration" in message, message[-3000:]
    for phrase in phrases:
        assert phrase in message
