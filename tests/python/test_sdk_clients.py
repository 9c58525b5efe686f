"""The official Python SDK (mcp 2.x), in both protocol eras, through sekisho, in front of real
servers: @modelcontextprotocol/server-everything (legacy-only, npm) and mcp-server-time
(dual-era, PyPI)."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

pytestmark = pytest.mark.timeout(120)

MODES = ["legacy", "2026-07-28", "auto"]


def client(gateway, mode: str) -> Client:
    return Client(gateway.mcp, mode=mode, cache=None)


@pytest.mark.parametrize("mode", MODES)
def test_session_era(gateway, mode):
    async def main():
        async with client(gateway, mode) as c:
            expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
            assert c.protocol_version == expected
            if mode != "2026-07-28":  # a pinned modern client skips discovery
                assert c.server_info.name == "sekisho"

    anyio.run(main)


@pytest.mark.parametrize("mode", MODES)
def test_tools_are_merged_and_namespaced(gateway, mode):
    async def main():
        async with client(gateway, mode) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            assert "everything__echo" in names and "time__get_current_time" in names
            assert all(n.startswith(("everything__", "time__")) for n in names)
            assert names == [t.name for t in (await c.list_tools()).tools], "deterministic order"

    anyio.run(main)


@pytest.mark.parametrize("mode", MODES)
def test_calls_reach_each_upstream(gateway, mode):
    async def main():
        async with client(gateway, mode) as c:
            echo = await c.call_tool("everything__echo", {"message": "through sekisho"})
            assert echo.content[0].text == "Echo: through sekisho"
            now = await c.call_tool("time__get_current_time", {"timezone": "Asia/Tokyo"})
            assert not now.is_error
            assert now.structured_content["timezone"] == "Asia/Tokyo"
            bad = await c.call_tool("time__get_current_time", {"timezone": "Not/AZone"})
            assert bad.is_error, "tool errors arrive as results"
            total = await c.call_tool("everything__get-sum", {"a": 2, "b": 40})
            assert "42" in total.content[0].text

    anyio.run(main)


@pytest.mark.parametrize("mode", MODES)
def test_resources_and_prompts(gateway, mode):
    async def main():
        async with client(gateway, mode) as c:
            resources = (await c.list_resources()).resources
            assert resources and all(str(r.uri).startswith("sekisho://everything/") for r in resources)
            read = await c.read_resource(str(resources[0].uri))
            assert read.contents and read.contents[0].text
            templates = (await c.list_resource_templates()).resource_templates
            assert any(t.uri_template.startswith("sekisho://everything/") for t in templates)
            prompts = [p.name for p in (await c.list_prompts()).prompts]
            assert "everything__simple-prompt" in prompts
            got = await c.get_prompt("everything__args-prompt", {"city": "Kyoto", "state": "Kansai"})
            assert "Kyoto" in str(got.messages[0].content)

    anyio.run(main)


@pytest.mark.parametrize("mode", MODES)
def test_progress_reaches_the_caller(gateway, mode):
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async def main():
        async with client(gateway, mode) as c:
            r = await c.call_tool(
                "everything__trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
            )
            assert "completed" in r.content[0].text

    anyio.run(main)
    assert [p for p, _ in seen] == [1.0, 2.0, 3.0, 4.0]
    assert all(t == 4.0 for _, t in seen)


@pytest.mark.parametrize("mode", MODES)
def test_cancellation_reaches_the_upstream(gateway, mode):
    async def main():
        async with client(gateway, mode) as c:
            with anyio.move_on_after(0.6) as scope:
                await c.call_tool("everything__trigger-long-running-operation", {"duration": 10, "steps": 10})
            assert scope.cancelled_caught
            # The gateway stops waiting on the upstream for the abandoned call.
            for _ in range(50):
                _, ready = gateway.readyz()
                if ready["upstreams"]["everything"]["in_flight"] == 0:
                    break
                await anyio.sleep(0.05)
            assert ready["upstreams"]["everything"]["in_flight"] == 0
            echo = await c.call_tool("everything__echo", {"message": "after cancel"})
            assert echo.content[0].text == "Echo: after cancel"

    anyio.run(main)


def test_metrics_count_requests(gateway):
    text = gateway.metrics()
    assert 'sekisho_requests_total{method="tools/call",upstream="everything",outcome="ok"}' in text
    assert 'sekisho_upstream_up{upstream="time"} 1' in text
