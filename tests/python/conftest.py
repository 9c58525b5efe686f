"""Starts the real sekisho binary in front of real MCP servers from npm and PyPI.

Environment (set by .ci/run):
  SEKISHO_BIN     the gateway binary (default: target/debug/sekisho)
  EVERYTHING_BIN  @modelcontextprotocol/server-everything's bin (npm, pinned)
  MEMORY_BIN      @modelcontextprotocol/server-memory's bin (npm, pinned)
  TIME_BIN        mcp-server-time's console script (PyPI, pinned)
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A running sekisho process."""

    def __init__(self, workdir: pathlib.Path, extra_config: str = "", upstreams: str | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp = f"{self.url}/mcp"
        binary = os.environ.get("SEKISHO_BIN", str(ROOT / "target" / "debug" / "sekisho"))
        everything = os.environ["EVERYTHING_BIN"]
        time_bin = os.environ["TIME_BIN"]
        config = workdir / "sekisho.toml"
        if upstreams is None:
            upstreams = f"""
[upstreams.everything]
command = {json.dumps(everything)}
args = ["stdio"]

[upstreams.time]
command = {json.dumps(time_bin)}
args = ["--local-timezone", "UTC"]
"""
        config.write_text(
            f"""
[server]
listen = "127.0.0.1:{self.port}"
{extra_config}

[log]
level = "info"
{upstreams}"""
        )
        self.log_path = workdir / "sekisho.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, "serve", "--config", str(config)], stdout=self._log, stderr=self._log)
        self.wait_ready(60)

    def readyz(self, strict: bool = False) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz{'?strict=1' if strict else ''}", timeout=5) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"sekisho exited:\n{self.log()}"
            try:
                status, _ = self.readyz(strict=True)
                if status == 200:
                    time.sleep(0.3)  # let the catalog list the fresh upstreams
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"sekisho not ready in {seconds}s:\n{self.log()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            return r.read().decode()

    def children(self) -> dict[int, str]:
        """Direct child processes of the gateway: pid -> command line."""
        kids: dict[int, str] = {}
        for task in pathlib.Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    kids[int(pid)] = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except FileNotFoundError:
                    pass
        return kids

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self._log.close()
        return code


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("gw"))
    yield gw
    assert gw.stop() == 0, gw.log()


@pytest.fixture
def fresh_gateway(tmp_path):
    gw = Gateway(tmp_path)
    yield gw
    assert gw.stop() == 0, gw.log()
