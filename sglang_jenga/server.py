"""Start and stop real `python -m sglang.launch_server` processes (tests, examples, benchmarks).

A `Server` is a context manager: it starts the launcher in its own process group, waits until
the server answers, and on exit (also on an exception) kills the whole group, so no scheduler
or detokenizer child outlives it.

On a CPU-only machine `cpu=True` adds sglang's CPU switches (see REFERENCE: SGLANG_USE_CPU_ENGINE,
`--device cpu --attention-backend torch_native`) and restricts sglang's model registry to the
architectures the model needs (`SGLANG_DISABLED_MODEL_ARCHS`), which cuts start-up by ~20 s.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

CPU_ARGS = ("--device", "cpu", "--attention-backend", "torch_native", "--disable-cuda-graph")


class ServerError(RuntimeError):
    """The server exited, did not become ready or dropped a connection; the message ends with its log tail."""


# HTTP ports come from between sglang's own late-bound ports (the scheduler's gloo port, drawn from 22000-29999
# at launch and bound ~20 s later: server_args.PortArgs.init_new, get_free_port_below_ephemeral) and the kernel's
# ephemeral range, from which every outgoing connection takes its local port: a port from bind(0) could be taken
# by one before the server binds it (seen 2026-12-07: two servers started side by side, one uvicorn failed to bind,
# and sglang's launcher then hung instead of exiting).
_HTTP_PORTS = (30000, 32767)
_handed_out: set[int] = set()  # ports this process gave a server (none binds before its start)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


BIND_FAILED = "error while attempting to bind on address"  # uvicorn's message when its port is taken


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to now and that no other server of this process was given,
    outside the ranges where it could be taken before the server binds it (above)."""
    low, high = _HTTP_PORTS[0], min(_HTTP_PORTS[1], _ephemeral_low() - 1)
    for port in random.sample(range(low, high + 1), min(64, max(high - low + 1, 0))):
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # an unusual ephemeral range: any free port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sglang_models_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sglang")
    assert spec is not None and spec.origin is not None, "sglang is not installed"
    return Path(spec.origin).parent / "srt" / "models"


def disabled_model_modules(architectures: list[str]) -> list[str]:
    """Names of sglang model modules that define none of `architectures` (safe to skip)."""
    keep, skip = re.compile("|".join(rf"\b{re.escape(a)}\b" for a in architectures)), []
    for path in sorted(_sglang_models_dir().glob("*.py")):
        text = path.read_text(errors="replace")
        entry = text[text.rfind("EntryClass") :] if "EntryClass" in text else ""
        if not keep.search(entry):
            skip.append(path.stem)
    return skip


def _architectures(model_path: str | Path) -> list[str]:
    config = Path(model_path) / "config.json"
    return list(json.loads(config.read_text()).get("architectures", [])) if config.exists() else []


def _draft_architectures(args: tuple[str, ...]) -> list[str]:
    """The architectures of a `--speculative-draft-model-path` among launch flags (their modules must load too)."""
    flag = "--speculative-draft-model-path"
    return _architectures(args[args.index(flag) + 1]) if flag in args[:-1] else []


class Server:
    """One sglang HTTP server process group on 127.0.0.1.

    `args` are extra launch_server flags. `env` is merged over os.environ. The log goes to
    `log_path` (a temporary file by default); `log()` returns it.
    """

    def __init__(
        self,
        model_path: str | Path,
        *args: str,
        cpu: bool = True,
        env: dict[str, str] | None = None,
        extra_architectures: tuple[str, ...] = (),
        log_path: str | Path | None = None,
        timeout_s: float = 400.0,
    ) -> None:
        self.model_path = str(model_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="sglang-", suffix=".log")[1])
        self.cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", self.model_path]
        self.cmd += ["--host", "127.0.0.1", "--port", str(self.port), *(CPU_ARGS if cpu else ()), *args]
        self.env = {**os.environ, **(env or {})}
        if cpu:
            archs = _architectures(model_path) + _draft_architectures(args) + list(extra_architectures)
            self.env.setdefault("SGLANG_USE_CPU_ENGINE", "1")
            if archs:
                self.env.setdefault("SGLANG_DISABLED_MODEL_ARCHS", ",".join(disabled_model_modules(archs)))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Server:
        """Launch and block until /health_generate answers 200; raises ServerError otherwise."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with code {self.proc.returncode}\n{self.log_tail()}")
            if self._healthy():
                return self
            if BIND_FAILED in self.log_tail(20):  # sglang's launcher does not exit after it
                self.stop()
                raise ServerError(f"port {self.port} was taken before the server bound it\n{self.log_tail()}")
            time.sleep(1.0)
        self.stop()
        raise ServerError(f"server not ready after {self.timeout_s:.0f} s\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health_generate", timeout=30).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Kill the whole process group: SIGTERM, then SIGKILL after 1 s (sglang's graceful shutdown takes ~6 s
        on CPU and keeps nothing these servers need; either way it leaves its one `sglang_loads_*` file in
        /dev/shm). Idempotent."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait_s in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 10.0)):
            if not _group_has_live_members(pgid):
                break
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_has_live_members(pgid):
                self.proc.poll()
                time.sleep(0.2)
        self.proc.poll()

    def __enter__(self) -> Server:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests ---------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kw: Any) -> requests.Response:
        """One HTTP request; if the connection fails, a ServerError with the server's log tail (which holds the
        traceback of a crash) instead of a bare connection error."""
        try:
            r = requests.request(method, self.url + path, **kw)
        except requests.ConnectionError as e:
            state = "running" if self.proc is not None and self.proc.poll() is None else "exited"
            raise ServerError(f"{method} {path}: {e} (server {state})\n{self.log_tail()}") from e
        r.raise_for_status()
        return r

    def get(self, path: str, **kw: Any) -> Any:
        return self._send("GET", path, timeout=kw.pop("timeout", 120), **kw).json()

    def post(self, path: str, payload: dict[str, Any] | None = None, **kw: Any) -> Any:
        r = self._send("POST", path, json=payload, timeout=kw.pop("timeout", 300), **kw)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def generate(self, text: str | list[int], max_new_tokens: int = 16, **sampling: Any) -> dict[str, Any]:
        """Greedy (temperature 0 unless given) /generate; text or input_ids."""
        key = "input_ids" if isinstance(text, list) else "text"
        params = {"max_new_tokens": max_new_tokens, "temperature": 0.0, **sampling}
        return dict(self.post("/generate", {key: text, "sampling_params": params}))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def pinned_env(core: int) -> dict[str, str]:
    """Environment that pins a CPU server's model threads to one core (`core` modulo the core count), so
    two servers compared side by side do not compete for the same cores."""
    return {"SGLANG_CPU_OMP_THREADS_BIND": str(core % (os.cpu_count() or 1))}


def start_all(servers: list[Server]) -> list[Server]:
    """Start `servers` side by side; if any fails, stop them all and re-raise."""
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            for future in [pool.submit(s.start) for s in servers]:
                future.result()
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: Sequence[Server]) -> None:
    """Stop `servers` side by side (each waits for its own shutdown)."""
    if servers:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(Server.stop, servers))


def _group_has_live_members(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
