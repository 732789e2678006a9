"""Drives our MCP gateway with the official MCP Python SDK (PyPI `mcp`, the 2.x line; tested
with 2.3.0) over Streamable HTTP, in both of the SDK's ways to connect:

  legacy  `streamable_http_client(url)` + `ClientSession(read, write)` + `initialize()`: the
          2025 session era (initialize handshake, Mcp-Session-Id), as every 1.x client did.
  auto    `mcp.Client(url)`, the SDK's default: probes `server/discover` and adopts the
          stateless 2026-07-28 era when the server offers it, else falls back to initialize.

In each mode it lists the tools (every page), checks the meta tools and the agent's tool,
calls the agent's tool (by tool name and by FQDN) and call_agent, two meta tools, an unknown
tool (a JSON-RPC error) and bad arguments (isError naming the field).

Output: `PASS <mode> <check>` / `FAIL <mode> <check>: <why>` lines, `KNOWN <mode> <issue>:
...` for a known gateway issue tolerated with `--tolerate ISSUE`, `FIXED <mode> <issue>` when a
tolerated issue did not show, `NOTE ...` for harmless observations, one `RESULT <json>` line
per mode, and exit status 0 only when no check failed.

usage: python mcp_sdk_gateway.py --url http://127.0.0.1:PORT/mcp --tool analyst_finance_acme \
         --agent analyst.finance.acme --task "1 2 3" --expect "count=3 ..." [--modes legacy,auto]
"""

import argparse
import json
import logging
import sys
import traceback
from importlib.metadata import version

import anyio
import mcp
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

try:  # mcp 2.x
    from mcp import MCPError
except ImportError:  # mcp 1.x
    from mcp.shared.exceptions import McpError as MCPError

META_TOOLS = [
    "discover_agents",
    "get_agent_details",
    "get_agents_info",
    "list_agents",
    "search_agents",
    "get_server_info",
    "resolve_agent",
    "call_agent",
    "route_task",
]

# Known gateway issues a caller may tolerate (--tolerate NAME) until they are fixed.
KNOWN_ISSUES = {
    "call-agent-result-type": (
        "in the 2026-07-28 era the call_agent result lacks `resultType`, which the SDK "
        "requires (pydantic: CallToolResult.resultType Field required)"
    ),
}


class SessionTerminationWatch(logging.Handler):
    """Notices the SDK's warning when the server answers the session's DELETE with a status
    other than 200/204 (the SDK logs it and carries on)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        message = record.getMessage()
        if "Session termination failed" in message:
            self.messages.append(message)


class Checks:
    def __init__(self, mode, tolerate):
        self.mode = mode
        self.tolerate = tolerate
        self.failures = 0
        self.known = []

    def ok(self, name, condition, why=""):
        if condition:
            print(f"PASS {self.mode} {name}", flush=True)
        else:
            self.failures += 1
            print(f"FAIL {self.mode} {name}: {why}", flush=True)
        return condition

    def fail(self, name, why):
        return self.ok(name, False, why)

    def known_issue(self, issue, detail):
        if issue in self.tolerate:
            self.known.append(issue)
            print(f"KNOWN {self.mode} {issue}: {KNOWN_ISSUES[issue]}: {detail}", flush=True)
        else:
            self.fail(issue, f"{KNOWN_ISSUES[issue]}: {detail}")

    def fixed(self, issue):
        if issue in self.tolerate:
            print(f"FIXED {self.mode} {issue}: remove --tolerate {issue}", flush=True)


def dump(model):
    """An SDK model as the JSON the wire carried (camelCase keys, no None fields)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def text_of(result):
    return "\n".join(b["text"] for b in result.get("content", []) if b.get("type") == "text")


def first_text_json(result):
    blocks = [b for b in result.get("content", []) if b.get("type") == "text"]
    return json.loads(blocks[0]["text"])


class Legacy:
    """The 1.x way: transport streams + ClientSession + initialize()."""

    def __init__(self, session):
        self.session = session

    async def list_tools(self, cursor):
        params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
        return await self.session.list_tools(params=params)

    async def call_tool(self, name, arguments):
        return await self.session.call_tool(name, arguments)


class High:
    """The 2.x high-level `mcp.Client`."""

    def __init__(self, client):
        self.client = client

    async def list_tools(self, cursor):
        return await self.client.list_tools(cursor=cursor)

    async def call_tool(self, name, arguments):
        return await self.client.call_tool(name, arguments)


async def walk(api, checks, args, summary):
    # tools/list, every page.
    tools, cursor, pages = [], None, 0
    while True:
        page = dump(await api.list_tools(cursor))
        pages += 1
        tools.extend(page.get("tools", []))
        cursor = page.get("nextCursor")
        if not cursor or pages > 50:
            break
    names = [t["name"] for t in tools]
    summary["tools"] = names
    missing = [m for m in META_TOOLS if m not in names]
    checks.ok("tools/list meta tools", not missing, f"missing {missing} from {names}")
    agent_tool = next((t for t in tools if t["name"] == args.tool), None)
    if checks.ok("tools/list agent tool", agent_tool is not None, f"{args.tool} not in {names}"):
        schema = agent_tool.get("inputSchema", {})
        checks.ok(
            "agent tool input schema",
            schema.get("type") == "object" and "task" in schema.get("required", []),
            json.dumps(schema),
        )

    expected = {"result": args.expect, "success": True, "error": None}

    # The agent's own tool, by tool name and by FQDN (the Python AOP way of calling by name).
    for label, name in (("agent tool", args.tool), ("agent tool by FQDN", args.agent)):
        result = dump(await api.call_tool(name, {"task": args.task}))
        summary[label] = result
        checks.ok(f"{label} isError", result.get("isError") is not True, text_of(result))
        checks.ok(
            f"{label} structuredContent",
            result.get("structuredContent") == expected,
            f"{result.get('structuredContent')!r} != {expected!r}",
        )
        try:
            checks.ok(
                f"{label} JSON text block",
                first_text_json(result) == result.get("structuredContent"),
                text_of(result),
            )
        except (ValueError, IndexError) as e:
            checks.fail(f"{label} JSON text block", f"{e}: {text_of(result)!r}")

    # call_agent.
    issue = "call-agent-result-type"
    try:
        result = dump(
            await api.call_tool("call_agent", {"name": args.agent, "arguments": {"task": args.task}})
        )
    except ValidationError as e:
        if "resultType" in str(e) and summary.get("protocol_version", "") >= "2026":
            checks.known_issue(issue, str(e).splitlines()[0])
        else:
            checks.fail("call_agent", f"{type(e).__name__}: {e}")
        result = None
    if result is not None:
        checks.fixed(issue)
        summary["call_agent"] = result
        structured = result.get("structuredContent") or {}
        checks.ok("call_agent isError", result.get("isError") is not True, text_of(result))
        checks.ok("call_agent text", text_of(result) == args.expect, repr(text_of(result)))
        checks.ok(
            "call_agent structuredContent",
            structured.get("success") is True
            and structured.get("result") == args.expect
            and str(structured.get("served_by", "")).startswith("http://"),
            json.dumps(structured),
        )

    # Meta tools: one JSON text block, the same object as structuredContent.
    result = dump(await api.call_tool("list_agents", {}))
    listed = result.get("structuredContent") or {}
    checks.ok("list_agents", listed.get("success") is True and args.agent in listed.get("agent_names", []),
              json.dumps(listed))
    checks.ok("list_agents JSON text block", first_text_json(result) == listed, text_of(result))
    result = dump(await api.call_tool("discover_agents", {}))
    agents = (result.get("structuredContent") or {}).get("agents", [])
    checks.ok(
        "discover_agents",
        any(a.get("tool_name") == args.tool and a.get("agent_name") == args.agent for a in agents),
        json.dumps(agents)[:2000],
    )

    # An unknown tool is a JSON-RPC error (docs/protocol.md §6), which the SDK raises.
    try:
        result = dump(await api.call_tool("no_such_tool", {"task": "x"}))
        checks.fail("unknown tool", f"no JSON-RPC error, got {json.dumps(result)}")
    except MCPError as e:
        checks.ok("unknown tool", "no_such_tool" in str(e), f"code {e.error.code}: {e}")
        summary["unknown tool error"] = {"code": e.error.code, "message": str(e)}

    # Bad arguments: isError, naming the field.
    for label, name, arguments, words in (
        ("bad argument type", args.tool, {"task": 42}, ["task"]),
        ("missing argument", args.tool, {}, ["task"]),
        ("call_agent bad arguments", "call_agent", {"name": args.agent, "arguments": {}}, ["task"]),
    ):
        try:
            result = dump(await api.call_tool(name, arguments))
        except ValidationError as e:
            if "resultType" in str(e) and summary.get("protocol_version", "") >= "2026":
                checks.known_issue(issue, f"{label}: {str(e).splitlines()[0]}")
                continue
            raise
        text = text_of(result)
        summary[label] = text
        checks.ok(
            label,
            result.get("isError") is True and all(w in text for w in words),
            f"isError={result.get('isError')!r} text={text!r}",
        )


async def run_mode(mode, args, tolerate):
    checks = Checks(mode, tolerate)
    summary = {"mode": mode, "mcp": version("mcp")}
    try:
        with anyio.fail_after(args.timeout):
            if mode == "legacy":
                async with streamable_http_client(args.url) as streams:
                    async with ClientSession(streams[0], streams[1]) as session:
                        init = dump(await session.initialize())
                        summary["protocol_version"] = init.get("protocolVersion")
                        summary["server_info"] = init.get("serverInfo")
                        checks.ok("initialize", bool(init.get("protocolVersion")), json.dumps(init))
                        await walk(Legacy(session), checks, args, summary)
            else:
                async with mcp.Client(args.url) as client:
                    summary["protocol_version"] = client.protocol_version
                    info = client.server_info
                    summary["server_info"] = dump(info) if info is not None else None
                    checks.ok("connect", bool(client.protocol_version), "no protocol version")
                    await walk(High(client), checks, args, summary)
    except BaseException as e:  # noqa: BLE001 - report whatever broke the walk
        checks.fail("walk", "".join(traceback.format_exception(e)))
    summary["known"] = checks.known
    summary["failures"] = checks.failures
    print("RESULT " + json.dumps(summary), flush=True)
    return checks.failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", required=True, help="the agent's tool name, e.g. analyst_finance_acme")
    parser.add_argument("--agent", required=True, help="the agent's FQDN, e.g. analyst.finance.acme")
    parser.add_argument("--task", required=True)
    parser.add_argument("--expect", required=True, help="the agent's answer to the task")
    parser.add_argument("--modes", default="legacy,auto")
    parser.add_argument("--tolerate", action="append", default=[], choices=sorted(KNOWN_ISSUES))
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    watch = SessionTerminationWatch()
    logging.getLogger("mcp").addHandler(watch)
    failures = 0
    for mode in args.modes.split(","):
        failures += anyio.run(run_mode, mode, args, set(args.tolerate))
    for message in watch.messages:
        print(f"NOTE the SDK logged {message!r} (the gateway's answer to DELETE /mcp)", flush=True)
    print(f"mcp_sdk_gateway: mcp {version('mcp')}, {failures} failed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
