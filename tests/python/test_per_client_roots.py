"""A stateful real server behind a per-client upstream: @modelcontextprotocol/server-filesystem
(npm) started without directories takes its allowed directories from its client's roots. With
`session = "per-client"` each client session gets its own process, which asks that client (and
only that client) for its roots; ending the client session (DELETE) ends the process."""

from __future__ import annotations

import json
import os
import pathlib
import time

import anyio
import pytest
from mcp import Client, types

from conftest import Gateway

pytestmark = pytest.mark.timeout(180)


def filesystem_bin() -> str:
    explicit = os.environ.get("FILESYSTEM_BIN")
    if explicit:
        return explicit
    return str(pathlib.Path(os.environ["EVERYTHING_BIN"]).parent / "mcp-server-filesystem")


@pytest.fixture
def fs_gateway(tmp_path):
    extra = f"""
[upstreams.fs]
command = {json.dumps(filesystem_bin())}
session = "per-client"
max_client_sessions = 4
"""
    gw = Gateway(tmp_path, extra)
    yield gw
    assert gw.stop() == 0, gw.log()


def roots_of(directory: pathlib.Path):
    async def list_roots(_context) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=directory.as_uri(), name=directory.name)])

    return list_roots


async def allowed(c: Client) -> list[str]:
    """The filesystem server's allowed directories, once it has them (it asks for the roots
    right after its handshake, which may still be under way when the first call comes)."""
    deadline = time.monotonic() + 30
    while True:
        result = await c.call_tool("fs__list_allowed_directories", {})
        lines = result.content[0].text.splitlines()[1:]
        if lines or time.monotonic() > deadline:
            return lines
        await anyio.sleep(0.1)


def fs_pids(gw: Gateway) -> set[int]:
    return {pid for pid, cmd in gw.children().items() if "mcp-server-filesystem" in cmd}


def test_each_client_sees_only_its_own_roots_and_its_process_ends_with_its_session(fs_gateway, tmp_path):
    gw = fs_gateway
    a_dir, b_dir = tmp_path / "alice", tmp_path / "bob"
    a_dir.mkdir()
    b_dir.mkdir()
    (a_dir / "only-alice.txt").write_text("a")
    shared = fs_pids(gw)  # the shared process the gateway lists the tools with

    async def main():
        async with Client(gw.mcp, mode="legacy", cache=None, list_roots_callback=roots_of(a_dir)) as alice:
            async with Client(gw.mcp, mode="legacy", cache=None, list_roots_callback=roots_of(b_dir)) as bob:
                assert await allowed(alice) == [str(a_dir.resolve())], gw.log()[-4000:]
                assert await allowed(bob) == [str(b_dir.resolve())], gw.log()[-4000:]
                listing = await bob.call_tool("fs__list_directory", {"path": str(a_dir)})
                assert listing.is_error, "bob's process does not allow alice's directory"
                own = await alice.call_tool("fs__list_directory", {"path": str(a_dir)})
                assert "only-alice.txt" in own.content[0].text
                per_client = fs_pids(gw) - shared
                assert len(per_client) == 2, gw.children()
                _, ready = gw.readyz()
                assert ready.get("upstreams", {}).get("fs", {}).get("client_sessions", {}).get("live") == 2, ready
            # Bob's session ended (the SDK sends DELETE on close): his process exits.
            deadline = time.monotonic() + 20
            while len(fs_pids(gw) - shared) > 1 and time.monotonic() < deadline:
                await anyio.sleep(0.1)
            assert len(fs_pids(gw) - shared) == 1, gw.children()
            assert await allowed(alice) == [str(a_dir.resolve())], "alice's process lives on"
        deadline = time.monotonic() + 20
        while fs_pids(gw) - shared and time.monotonic() < deadline:
            await anyio.sleep(0.1)
        assert not fs_pids(gw) - shared, gw.children()

    anyio.run(main)
