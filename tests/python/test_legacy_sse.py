"""The legacy HTTP+SSE transport (MCP 2024-11-05 "HTTP with SSE") on both sides of sekisho,
with real peers: the official Python SDK's SSE client on sekisho's `/sse`, and
@modelcontextprotocol/server-everything's own SSE mode (`mcp-server-everything sse`, npm) as an
upstream with `transport = "sse"`, reached through sekisho's Streamable HTTP front."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import anyio
import pytest
from mcp import Client, ClientSession
from mcp.client.sse import sse_client

from conftest import Gateway, _free_port

pytestmark = pytest.mark.timeout(120)


def test_the_sdk_sse_client_lists_calls_and_gets_progress(gateway):
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def main():
        async with sse_client(f"{gateway.url}/sse") as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                assert init.server_info.name == "sekisho"
                names = [t.name for t in (await s.list_tools()).tools]
                assert "everything__echo" in names and "time__get_current_time" in names
                echo = await s.call_tool("everything__echo", {"message": "over the SSE transport"})
                assert echo.content[0].text == "Echo: over the SSE transport"
                done = await s.call_tool(
                    "everything__trigger-long-running-operation",
                    {"duration": 1, "steps": 4},
                    progress_callback=on_progress,
                )
                assert "completed" in done.content[0].text
                resources = (await s.list_resources()).resources
                read_back = await s.read_resource(str(resources[0].uri))
                assert read_back.contents

    anyio.run(main)
    assert seen == [1.0, 2.0, 3.0, 4.0]


def test_the_sdk_sse_client_on_one_upstream(gateway):
    async def main():
        async with sse_client(f"{gateway.url}/servers/everything/sse") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                names = [t.name for t in (await s.list_tools()).tools]
                assert "echo" in names and not any(n.startswith("time__") for n in names)
                total = await s.call_tool("get-sum", {"a": 2, "b": 40})
                assert "42" in total.content[0].text

    anyio.run(main)


def test_closing_the_sse_stream_ends_the_session(gateway):
    async def main():
        ids: list[str] = []
        async with sse_client(f"{gateway.url}/sse", on_session_created=ids.append) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
        assert ids
        import httpx2

        # The stream is gone, so is its session: a later POST is for an unknown session.
        for _ in range(100):
            async with httpx2.AsyncClient() as h:
                r = await h.post(
                    f"{gateway.url}/messages?sessionId={ids[0]}", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
                )
            if r.status_code == 404:
                break
            await anyio.sleep(0.05)
        assert r.status_code == 404

    anyio.run(main)


def _wait_listening(port: int, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mcp-server-everything sse exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"mcp-server-everything sse not listening on {port}")


@pytest.fixture(scope="module")
def everything_sse():
    port = _free_port()
    proc = subprocess.Popen(
        [os.environ["EVERYTHING_BIN"], "sse"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_listening(port, proc, 30)
    yield f"http://127.0.0.1:{port}/sse"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sse_upstream_gateway(tmp_path_factory, everything_sse):
    upstreams = f"""
[upstreams.everything]
url = "{everything_sse}"
transport = "sse"
"""
    gw = Gateway(tmp_path_factory.mktemp("gw-sse-upstream"), upstreams=upstreams)
    yield gw
    assert gw.stop() == 0, gw.log()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_server_everything_over_sse_behind_the_gateway(sse_upstream_gateway, mode):
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def main():
        async with Client(sse_upstream_gateway.mcp, mode=mode, cache=None) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            assert "everything__echo" in names and "everything__get-sum" in names
            echo = await c.call_tool("everything__echo", {"message": "to an SSE upstream"})
            assert echo.content[0].text == "Echo: to an SSE upstream"
            total = await c.call_tool("everything__get-sum", {"a": 2, "b": 40})
            assert "42" in total.content[0].text
            resources = (await c.list_resources()).resources
            assert resources and all(str(r.uri).startswith("sekisho://everything/") for r in resources)
            read = await c.read_resource(str(resources[0].uri))
            assert read.contents and read.contents[0].text
            done = await c.call_tool(
                "everything__trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=on_progress
            )
            assert "completed" in done.content[0].text

    anyio.run(main)
    assert seen == [1.0, 2.0]
    _, ready = sse_upstream_gateway.readyz()
    assert ready["upstreams"]["everything"]["status"] == "up"
