"""Drives our gateway started with `--auth` (docs/protocol.md 8.2) with the official MCP Python
SDK (PyPI `mcp`, the 2.x line; tested with 2.3.0): the resource server as an MCP client sees it.

Checks:
  - without a token, the SDK's own HTTP client (httpx2) gets 401 with a
    `WWW-Authenticate: Bearer resource_metadata="..."` challenge, and that URL serves the RFC 9728
    document naming the resource;
  - the SDK's session (streamable_http_client + ClientSession + initialize) over an httpx2
    client carrying `Authorization: Bearer <token>` connects, lists every tool page, and sees
    the `--visible` tools and none of the `--hidden` ones;
  - calling a `--forbidden` tool (seen, not callable) fails (HTTP 403 insufficient_scope), and
    a `--visible` call with `--task` answers.

With `--oauth` the token is not given: the SDK's own OAuth client (OAuthClientProvider) gets
one, from the 401 challenge on: the protected-resource metadata, the authorization server's
metadata (RFC 8414), dynamic client registration, the authorization code with PKCE (the
"browser" is this script following the authorization endpoint's redirect) and the token
exchange, against the small authorization server the Rust test runs; then the same session
checks run with the token it got.

Output: `PASS <check>` / `FAIL <check>: <why>` lines, one `RESULT <json>` line, and exit status
0 only when no check failed.

usage: python mcp_sdk_auth.py --url http://127.0.0.1:PORT/mcp (--token TOKEN | --oauth)
         --visible TOOL... --hidden TOOL... --forbidden TOOL --call TOOL --task TEXT
"""

import argparse
import json
import sys
import traceback
from importlib.metadata import version

from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
import mcp
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

failures = 0


def check(name, condition, why=""):
    global failures
    if condition:
        print(f"PASS {name}", flush=True)
    else:
        failures += 1
        print(f"FAIL {name}: {why}", flush=True)
    return condition


async def without_token(url):
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcp-sdk-auth", "version": "1"},
        },
    }
    async with httpx2.AsyncClient() as http:
        answer = await http.post(
            url,
            json=initialize,
            headers={"accept": "application/json, text/event-stream"},
        )
        challenge = answer.headers.get("www-authenticate", "")
        check("no-token-401", answer.status_code == 401, f"status {answer.status_code}")
        check(
            "no-token-challenge",
            challenge.startswith("Bearer resource_metadata="),
            repr(challenge),
        )
        metadata_url = challenge.split('resource_metadata="', 1)[-1].split('"', 1)[0]
        document = {}
        if metadata_url.startswith("http"):
            got = await http.get(metadata_url)
            check("metadata-200", got.status_code == 200, f"status {got.status_code}")
            document = got.json()
        check("metadata-resource", document.get("resource") == url, json.dumps(document))
        check(
            "metadata-bearer-header",
            document.get("bearer_methods_supported") == ["header"],
            json.dumps(document),
        )
    # The SDK's session without a token fails to initialize.
    try:
        async with httpx2.AsyncClient() as http:
            async with streamable_http_client(url, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(20):
                        await session.initialize()
        check("sdk-without-token-refused", False, "initialize succeeded without a token")
    except BaseException as error:  # noqa: BLE001 - any failure is the expected refusal
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        check("sdk-without-token-refused", True)
    return document


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def oauth_provider(url, storage):
    """The SDK's OAuth client; the user's browser is this script following the redirect."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

    redirected = {}

    async def redirect_handler(authorization_url):
        async with httpx2.AsyncClient() as http:
            answer = await http.get(authorization_url)
        location = answer.headers.get("location", "")
        query = parse_qs(urlparse(location).query)
        redirected["code"] = query.get("code", [""])[0]
        redirected["state"] = query.get("state", [None])[0]
        print(f"NOTE authorization endpoint answered {answer.status_code}", flush=True)

    async def callback_handler():
        return AuthorizationCodeResult(code=redirected["code"], state=redirected["state"])

    metadata = OAuthClientMetadata(
        client_name="aop-interop",
        redirect_uris=["http://127.0.0.1:9/callback"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )


async def with_token(args):
    storage = None
    if args.oauth:
        storage = MemoryStorage()
        client = lambda: httpx2.AsyncClient(auth=oauth_provider(args.url, storage))  # noqa: E731
    else:
        headers = {"Authorization": f"Bearer {args.token}"}
        client = lambda: httpx2.AsyncClient(headers=headers)  # noqa: E731
    names = []
    called = None
    async with client() as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(30):
                    await session.initialize()
                    cursor = None
                    while True:
                        params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
                        page = await session.list_tools(params=params)
                        names.extend(tool.name for tool in page.tools)
                        cursor = page.next_cursor
                        if not cursor:
                            break
                check("list-tools", len(names) > 0, "no tools")
                for tool in args.visible:
                    check(f"sees-{tool}", tool in names, f"{tool} not in {names}")
                for tool in args.hidden:
                    check(f"hides-{tool}", tool not in names, f"{tool} listed")
                if args.call:
                    with anyio.fail_after(30):
                        result = await session.call_tool(args.call, {"task": args.task})
                    called = "\n".join(
                        block.text for block in result.content if getattr(block, "type", "") == "text"
                    )
                    check("call-visible", not result.is_error, called)
    if args.oauth:
        check("oauth-token", storage.tokens is not None, "the SDK stored no token")
        headers = {"Authorization": f"Bearer {storage.tokens.access_token}"}
        client = lambda: httpx2.AsyncClient(headers=headers)  # noqa: E731
    if args.forbidden:
        # A fresh session: the refused request may end the SDK's session.
        try:
            async with client() as http:
                async with streamable_http_client(args.url, http_client=http) as (read, write, *_):
                    async with ClientSession(read, write) as session:
                        with anyio.fail_after(30):
                            await session.initialize()
                            result = await session.call_tool(args.forbidden, {"task": args.task})
            check("call-forbidden-refused", False, f"answered: {result}")
        except BaseException as error:  # noqa: BLE001
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            check("call-forbidden-refused", True)
    return names, called


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--token")
    group.add_argument("--oauth", action="store_true")
    parser.add_argument("--visible", nargs="*", default=[])
    parser.add_argument("--hidden", nargs="*", default=[])
    parser.add_argument("--forbidden", default="")
    parser.add_argument("--call", default="")
    parser.add_argument("--task", default="1 2 3")
    args = parser.parse_args()
    print(f"NOTE mcp {version('mcp')}", flush=True)
    document, names, called = {}, [], None
    try:
        document = await without_token(args.url)
        names, called = await with_token(args)
    except Exception:  # noqa: BLE001
        check("no-exception", False, traceback.format_exc())
    print(
        "RESULT "
        + json.dumps(
            {"failures": failures, "metadata": document, "tools": names, "called": called}
        ),
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
