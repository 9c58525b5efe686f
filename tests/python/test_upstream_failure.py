"""An upstream killed mid-test: the gateway keeps serving the others, restarts the child, and
recovers, with the failure visible in /readyz and metrics."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_killed_upstream_is_restarted_while_others_serve(fresh_gateway, mode):
    gw = fresh_gateway
    (time_pid,) = [pid for pid, cmd in gw.children().items() if "mcp-server-time" in cmd]

    async def main():
        async with Client(gw.mcp, mode=mode, cache=None) as c:
            before = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert not before.is_error
            os.kill(time_pid, signal.SIGKILL)
            failed = False
            deadline = time.monotonic() + 30
            while True:
                echo = await c.call_tool("everything__echo", {"message": "still serving"})
                assert echo.content[0].text == "Echo: still serving"
                try:
                    r = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
                    if failed and not r.is_error:
                        break
                except MCPError as e:
                    assert e.error.code == -32010, e.error  # unavailable, retryable
                    failed = True
                assert time.monotonic() < deadline, "the killed upstream never came back"
                await anyio.sleep(0.05)

    anyio.run(main)
    status, ready = gw.readyz()
    assert status == 200
    assert ready["upstreams"]["time"]["status"] == "up"
    assert ready["upstreams"]["time"]["restarts"] >= 1
    new_pids = [pid for pid, cmd in gw.children().items() if "mcp-server-time" in cmd]
    assert len(new_pids) == 1 and new_pids[0] != time_pid
    assert 'sekisho_upstream_restarts{upstream="time"} 1' in gw.metrics()
