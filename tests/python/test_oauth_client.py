"""The official Python SDK (mcp 2.x) through sekisho as an OAuth 2.1 resource server, with access
tokens from a real OpenID provider (oidc-provider from npm, tests/fixtures/oidc) and real servers
behind the gateway (server-everything from npm, mcp-server-time from PyPI).

The SDK's own `ClientCredentialsOAuthProvider` does the whole MCP `basic/authorization` flow: the
gateway's 401 challenge names its protected-resource metadata (RFC 9728), which names the provider;
the SDK reads the provider's metadata (RFC 8414 / OpenID discovery), asks its token endpoint for a
client_credentials token for the gateway's resource (RFC 8707), and retries with it. A token
fetched by hand and passed as a header works the same; a token for another resource is refused.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from conftest import Gateway, OpenIDProvider, _free_port, jwt_claims

pytestmark = pytest.mark.timeout(120)

MODES = ["legacy", "2026-07-28", "auto"]
SCOPE = "tools:call"


@dataclass
class Setup:
    gw: Gateway
    idp: OpenIDProvider

    @property
    def metadata_url(self) -> str:
        """The protected-resource metadata of the `/mcp` route (RFC 9728 §3.1)."""
        return f"{self.gw.url}/.well-known/oauth-protected-resource/mcp"


@pytest.fixture(scope="module")
def oauth(tmp_path_factory):
    """The provider, and the gateway accepting its tokens for the resource `http://127.0.0.1:<port>/mcp`."""
    work = tmp_path_factory.mktemp("oauth")
    port = _free_port()
    idp = OpenIDProvider(work, resource=f"http://127.0.0.1:{port}/mcp")
    try:
        gw = Gateway(
            work,
            port=port,
            extra_config=f"""
[auth.oauth]
resource = "http://127.0.0.1:{port}/mcp"
required_scopes = ["{SCOPE}"]
tenant_claim = "tenant"

[[auth.oauth.issuers]]
issuer = "{idp.issuer}"
""",
        )
    except BaseException:
        idp.stop()
        raise
    yield Setup(gw, idp)
    try:
        code = gw.stop()
    finally:
        idp.stop()
    assert code == 0, gw.log()


@dataclass
class Wire:
    """Every HTTP exchange one SDK client made, as its own httpx2 client saw them."""

    seen: list[tuple[str, str, int, str, bytes]] = field(default_factory=list)

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        challenge = response.headers.get("www-authenticate", "")
        self.seen.append((request.method, str(request.url), response.status_code, challenge, request.content))

    def to(self, url: str) -> list[tuple[str, int, str, bytes]]:
        return [(m, status, c, body) for m, u, status, c, body in self.seen if u == url]


class MemoryStorage:
    """The SDK's `TokenStorage` protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def http_client(wire: Wire, auth: httpx2.Auth | None = None, token: str | None = None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return httpx2.AsyncClient(
        auth=auth,
        headers=headers,
        timeout=httpx2.Timeout(30, read=60),
        event_hooks={"response": [wire.on_response]},
    )


def leaves(e: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `e` itself."""
    inner = getattr(e, "exceptions", None)  # a BaseExceptionGroup (builtin from 3.11)
    if isinstance(inner, tuple):
        return [leaf for x in inner for leaf in leaves(x)]
    return [e]


async def use_the_tools(c: Client) -> None:
    """List the merged tools and call one of each real server."""
    names = [t.name for t in (await c.list_tools()).tools]
    assert "everything__echo" in names and "time__get_current_time" in names, names
    echo = await c.call_tool("everything__echo", {"message": "with a bearer token"})
    assert echo.content[0].text == "Echo: with a bearer token"
    now = await c.call_tool("time__get_current_time", {"timezone": "Asia/Tokyo"})
    assert not now.is_error and now.structured_content["timezone"] == "Asia/Tokyo"


def test_no_token_gets_the_challenge_and_the_metadata_names_the_provider(oauth):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
    req = urllib.request.Request(
        oauth.gw.mcp,
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401
    challenge = refused.value.headers["WWW-Authenticate"]
    assert challenge == f'Bearer resource_metadata="{oauth.metadata_url}", scope="{SCOPE}"'

    # RFC 9728: the document at that URL names this gateway's resource and the provider.
    with urllib.request.urlopen(oauth.metadata_url, timeout=10) as r:
        doc = json.load(r)
    assert doc["resource"] == oauth.gw.mcp
    assert doc["authorization_servers"] == [oauth.idp.issuer]
    assert doc["scopes_supported"] == [SCOPE]
    assert doc["bearer_methods_supported"] == ["header"]
    # ...and the provider's own metadata is where a client finds the token endpoint.
    assert oauth.idp.metadata["issuer"] == oauth.idp.issuer
    assert "client_credentials" in oauth.idp.metadata["grant_types_supported"]


@pytest.mark.parametrize("mode", MODES)
def test_the_sdk_client_credentials_provider_discovers_gets_a_token_and_calls(oauth, mode):
    wire = Wire()
    storage = MemoryStorage()
    auth = ClientCredentialsOAuthProvider(
        server_url=oauth.gw.mcp,
        storage=storage,
        client_id="tenant-a",
        client_secret="secret-a",
        issuer=oauth.idp.issuer,
    )

    async def main():
        async with http_client(wire, auth=auth) as hc:
            async with Client(streamable_http_client(oauth.gw.mcp, http_client=hc), mode=mode, cache=None) as c:
                await use_the_tools(c)

    anyio.run(main)

    # The flow, in order: the unauthenticated first request and its challenge, the resource
    # metadata, the provider's metadata, one token request, then only authorized MCP requests.
    mcp = wire.to(oauth.gw.mcp)
    assert mcp[0][1] == 401 and f'resource_metadata="{oauth.metadata_url}"' in mcp[0][2], mcp[0]
    assert all(status in (200, 202) for _, status, _, _ in mcp[1:]), [s for _, s, _, _ in mcp]
    assert [s for _, s, _, _ in wire.to(oauth.metadata_url)] == [200]
    token_endpoint = oauth.idp.metadata["token_endpoint"]
    asked = wire.to(token_endpoint)
    assert [(m, s) for m, s, _, _ in asked] == [("POST", 200)], "one token for the whole session"
    form = urllib.parse.parse_qs(asked[0][3].decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["resource"] == [oauth.gw.mcp], "RFC 8707: the token is asked for this gateway"
    assert form["scope"] == [SCOPE], "the scope of the challenge"
    urls = [u for _, u, _, _, _ in wire.seen]
    found = [i for i, (_, u, status, _, _) in enumerate(wire.seen) if u.startswith(f"{oauth.idp.issuer}/.well-known/")]
    assert found and wire.seen[found[-1]][2] == 200, "the provider's metadata (RFC 8414 / OpenID discovery)"
    assert urls.index(oauth.metadata_url) < found[0] and found[-1] < urls.index(token_endpoint)

    claims = jwt_claims(storage.tokens.access_token)
    assert claims["iss"] == oauth.idp.issuer
    assert claims["aud"] == oauth.gw.mcp
    assert claims["client_id"] == "tenant-a" and claims["tenant"] == "acme"


@pytest.mark.parametrize("mode", MODES)
def test_a_token_fetched_by_hand_passes_as_a_header(oauth, mode):
    token = oauth.idp.token("tenant-a", "secret-a", SCOPE, oauth.gw.mcp)
    wire = Wire()

    async def main():
        async with http_client(wire, token=token) as hc:
            async with Client(streamable_http_client(oauth.gw.mcp, http_client=hc), mode=mode, cache=None) as c:
                await use_the_tools(c)

    anyio.run(main)
    assert all(status in (200, 202) for _, status, _, _ in wire.to(oauth.gw.mcp))


@pytest.mark.parametrize("mode", MODES)
def test_a_token_for_another_resource_is_refused(oauth, mode):
    token = oauth.idp.token("tenant-a", "secret-a", SCOPE, "https://other.example/mcp")
    assert jwt_claims(token)["aud"] == "https://other.example/mcp"
    wire = Wire()

    async def main():
        async with http_client(wire, token=token) as hc:
            async with Client(streamable_http_client(oauth.gw.mcp, http_client=hc), mode=mode, cache=None) as c:
                await c.list_tools()

    with pytest.raises(Exception) as failed:
        anyio.run(main)
    errors = leaves(failed.value)
    assert any(isinstance(e, MCPError) and "Unauthorized" in str(e) for e in errors), errors
    mcp = wire.to(oauth.gw.mcp)
    assert mcp, "the client reached the gateway"
    for _, status, challenge, _ in mcp:
        assert status == 401, mcp
        assert 'error="invalid_token"' in challenge and f'resource_metadata="{oauth.metadata_url}"' in challenge
