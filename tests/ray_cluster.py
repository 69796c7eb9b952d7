"""A Ray cluster of this test's own on this machine, started by ``ray start``, that stops only
itself. ``ray stop`` would stop every Ray cluster of this user on the machine (another test's,
another person's), so stopping kills by pid the processes that carry this cluster's own marker
in their environment (every process ``ray start`` spawns inherits it)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import free_port


class LocalRayCluster:
    """A head node and, given ``worker_env``, a worker node, each with its own temp folder and
    ports, ``num_cpus`` each. The head has the resource ``head``, the worker ``worker_node``.
    With ``dashboard`` the head serves jobs at ``self.dashboard`` (``http://127.0.0.1:PORT``).
    Entering returns the GCS address (``127.0.0.1:PORT``)."""

    MARKER = "NSTSTYLE_TEST_CLUSTER"

    def __init__(self, head_env: dict[str, str], worker_env: dict[str, str] | None = None, *,
                 dashboard: bool = False, num_cpus: int = 1, object_store_bytes: int = 80_000_000):
        # Short: Ray's socket paths live under the temp folder (at most 107 characters).
        self.folder = tempfile.mkdtemp(prefix="nst-ray-", dir="/tmp")
        self.port = free_port()
        self.envs = [{**env, self.MARKER: self.folder}
                     for env in (head_env, worker_env) if env is not None]
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.dashboard = f"http://127.0.0.1:{free_port()}" if dashboard else None
        self.num_cpus, self.object_store_bytes = num_cpus, object_store_bytes

    def __enter__(self) -> str:
        address = f"127.0.0.1:{self.port}"
        try:
            dashboard = ([f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}"] if self.dashboard
                         else ["--include-dashboard=false", f"--dashboard-port={free_port()}"])
            self._start(self.envs[0], "head", "--head", f"--port={self.port}", *dashboard,
                        f"--ray-client-server-port={free_port()}")
            for env in self.envs[1:]:
                self._start(env, "worker", f"--address={address}")
        except BaseException:
            self.__exit__()
            raise
        return address

    def _start(self, env: dict[str, str], node: str, *args: str) -> None:
        resource = "head" if node == "head" else "worker_node"
        started = subprocess.run(
            [self.ray, "start", *args, "--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}",
             f"--resources={json.dumps({resource: 1})}", f"--temp-dir={self.folder}/{node}",
             f"--object-store-memory={self.object_store_bytes}",
             f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stderr[-2000:]

    def pids(self) -> list[int]:
        marker = f"{self.MARKER}={self.folder}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:   # gone, or another user's
                continue
        return found

    def __exit__(self, *exc) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
