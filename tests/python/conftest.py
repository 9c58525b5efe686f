"""Starts the real sekisho binary in front of real MCP servers from npm and PyPI.

Environment (set by .ci/run):
  SEKISHO_BIN     the gateway binary (default: target/debug/sekisho)
  EVERYTHING_BIN  @modelcontextprotocol/server-everything's bin (npm, pinned)
  MEMORY_BIN      @modelcontextprotocol/server-memory's bin (npm, pinned)
  TIME_BIN        mcp-server-time's console script (PyPI, pinned)

`OpenIDProvider` runs tests/fixtures/oidc/provider.mjs (oidc-provider from npm, pinned; `npm ci`
there first, as .ci/run does) with node.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A running sekisho process."""

    def __init__(
        self, workdir: pathlib.Path, extra_config: str = "", upstreams: str | None = None, port: int | None = None
    ):
        self.port = port or _free_port()
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


class OpenIDProvider:
    """A running OpenID provider (tests/fixtures/oidc/provider.mjs) on 127.0.0.1.

    Its clients use the client_credentials grant with client_secret_basic: tenant-a/secret-a and
    tenant-b/secret-b get JWT access tokens (claim `tenant` = "acme" / "globex") whose `aud` is the
    RFC 8707 `resource` they asked for, `resource` when they name none.
    """

    FIXTURE = ROOT / "tests" / "fixtures" / "oidc"

    def __init__(self, workdir: pathlib.Path, resource: str):
        assert (self.FIXTURE / "node_modules" / "oidc-provider").is_dir(), (
            "run `npm ci` in tests/fixtures/oidc first (.ci/run does)"
        )
        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "provider.log"
        self._log = open(self.log_path, "wb")
        env = {**os.environ, "PORT": str(self.port), "RESOURCE": resource, "KEYS": str(workdir / "keys.json")}
        self.proc = subprocess.Popen(
            ["node", "provider.mjs"], cwd=self.FIXTURE, env=env, stdout=self._log, stderr=self._log
        )
        self.metadata = self._wait_serving(30)

    def _wait_serving(self, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the provider exited:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=5) as r:
                    return json.load(r)
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the provider not serving in {seconds}s:\n{self.log()}")

    def token(self, client_id: str, secret: str, scope: str, resource: str) -> str:
        """A client_credentials access token (RFC 6749 §4.4) for `scope` and `resource` (RFC 8707)."""
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope, "resource": resource})
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        req = urllib.request.Request(
            self.metadata["token_endpoint"],
            data=form.encode(),
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["access_token"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=20)
        self._log.close()


def jwt_claims(token: str) -> dict:
    """The payload of a JWS compact serialization, unverified (for asserting what a provider issued)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


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
