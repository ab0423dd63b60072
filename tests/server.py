"""A real ``chronos serve`` as a subprocess, for the end-to-end tests, the
crash and load loops (``bench/chaos.py``, ``bench/load.py``) and the
benchmarks (``bench/common.py`` builds on it).

The server runs in a session of its own (the driver's pid is the session id),
so every process it starts (Ray's GCS, raylet, workers) can be found through
/proc and killed with it. Its stdout and stderr go to ``server-<port>.log``
beside the data dir. Needs nothing beyond the ``test`` extra (no psutil).

    server = Server(tmp_path / "data", env={"CHRONOS_PLACEMENT": "pooled"})
    server.start()                      # seconds until /ready
    server.pids_titled("ray::HostActor")
    server.kill9()                      # kill -9 of the whole session
    server.start()                      # again, same data, same port
    assert server.stop() == 0           # Ctrl-C; the driver's exit code
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


# Below the kernel's ephemeral range (32768+), where Ray binds its own "random" ports,
# and above Ray's worker ports (10002-19999): a server restarted on the same port after
# a kill -9 would otherwise find it taken by a Ray process of the new session.
_PORTS = range(20000, 32000)


def free_port() -> int:
    while True:
        port = random.choice(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Server:
    def __init__(self, data_dir: Path, port: int | None = None, env: dict | None = None):
        self.data_dir, self.port = data_dir, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.proc: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir.parent / f"server-{self.port}.log", "a+")

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait for /ready; returns the seconds it took."""
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [BIN / "chronos", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), "--no-dashboard"],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chronos serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"chronos serve not ready after {timeout}s:\n{self.tail()}")

    def session_pids(self) -> list[int]:
        """Every live process of the server's session; zombies are left out
        (one whose parent never reaps it would otherwise never be gone)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getsid(int(entry)) != self.proc.pid:
                    continue
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue  # gone meanwhile
            if state != "Z":
                pids.append(int(entry))
        return pids

    def pids_titled(self, prefix: str) -> list[int]:
        """The session's processes whose title (Ray names its workers ``ray::Class``) starts with ``prefix``."""
        found = []
        for pid in self.session_pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith(prefix):
                found.append(pid)
        return found

    def kill9(self, timeout: float = 60.0) -> None:
        """kill -9 of the driver and every process of its session, then wait for the port to close."""
        deadline = time.monotonic() + timeout
        self.proc.poll()  # reap the driver if it is gone: its zombie would still count as the session's
        while pids := self.session_pids():  # a process may fork while we kill: sweep until none is left
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {pids} of chronos serve outlived kill -9 for {timeout}s")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
            self.proc.poll()
        self.proc.wait()
        if not self.wait_port_closed(timeout):
            raise RuntimeError(f"port {self.port} still answers {timeout}s after chronos serve was killed")

    def stop(self) -> int | None:
        """Ctrl-C, then kill whatever is left; returns the driver's exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()
        return self.proc.returncode

    def wait_port_closed(self, timeout: float = 60.0) -> bool:
        """Whether nothing listens on the server's port any more within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return True
            time.sleep(0.2)
        return False

    def read_log(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def tail(self, lines: int = 40) -> str:
        return "".join(self.read_log().splitlines(keepends=True)[-lines:])
