"""A client written for a swarms AOP server (swarms.structs.aop.AOP, swarms 14.0.2), run
unchanged against a real one (tests/clients/swarms_stub_server.py) and against our gateway.

It uses what such clients use: the MCP Python SDK 1.x (`mcp<2`, which swarms needs) over
Streamable HTTP, and it parses every answer the way swarms does: `json.loads` of the first
text block (swarms' own MCPManager returns that text; AOP servers put the dict there, while
their structuredContent wraps it as {"result": {...}}, so clients do not read it).

Part 1, the MCP SDK by hand: list_agents -> discover_agents -> get_agent_details ->
get_agents_info -> search_agents (--query) -> call the agent found, with {"task": ...}, by its
tool_name and by its agent_name -> get_server_info.
Part 2, swarms' own client classes (skip with --no-swarms-library): AOPCluster.get_tools()
and MCPManager.call_tool(), as a swarms Agent with mcp_url would call them.

Output: `PASS <check>` / `FAIL <check>: <why>` lines, then `SWARMS-CLIENT <json summary>`;
exit status 0 only when every check passed.

usage: python swarms_aop_client.py --url http://127.0.0.1:PORT/mcp --query echo \
         --task "hello" [--expect "hello"] [--no-swarms-library]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import traceback
from importlib.metadata import version

from mcp import ClientSession

try:  # mcp >= 1.2x
    from mcp.client.streamable_http import streamable_http_client as streamable_http
except ImportError:  # older mcp 1.x
    from mcp.client.streamable_http import streamablehttp_client as streamable_http

FAILURES = []


def check(name, condition, why=""):
    if condition:
        print(f"PASS {name}", flush=True)
    else:
        FAILURES.append(name)
        print(f"FAIL {name}: {why}", flush=True)
    return condition


def parse(result):
    """What a swarms client does with a tool result: json.loads of the first text block."""
    for block in result.content:
        if getattr(block, "type", None) == "text":
            return json.loads(block.text)
    raise ValueError(f"no text block in {result!r}")


async def call(session, name, arguments=None):
    """Calls a tool and parses its answer as swarms clients do: they read the dict from the
    text block and look at its `success`, not at isError (a swarms server sets isError only
    for protocol-level problems; our gateway also sets it with `success: false`)."""
    result = await session.call_tool(name, arguments or {})
    return parse(result)


async def by_hand(args, summary):
    async with streamable_http(args.url) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            summary["server"] = init.serverInfo.name
            summary["protocol_version"] = init.protocolVersion
            tools = [t.name for t in (await session.list_tools()).tools]
            summary["tools"] = tools

            listed = await call(session, "list_agents")
            names = listed.get("agent_names", [])
            summary["agent_names"] = names
            check(
                "list_agents",
                listed.get("success") is True and names and listed.get("total_count") == len(names),
                json.dumps(listed),
            )

            discovered = await call(session, "discover_agents")
            agents = discovered.get("agents", [])
            check("discover_agents", discovered.get("success") is True and agents, json.dumps(discovered))
            by_name = {a.get("agent_name"): a for a in agents}
            check("discover_agents covers list_agents", set(names) <= set(by_name), f"{names} vs {list(by_name)}")
            for agent in agents:
                check(
                    f"discovery info of {agent.get('agent_name')}",
                    all(k in agent for k in ("tool_name", "agent_name", "description", "tags", "capabilities"))
                    and agent["tool_name"] in tools,
                    json.dumps(agent),
                )

            first = names[0] if names else ""
            details = await call(session, "get_agent_details", {"agent_name": first})
            check(
                "get_agent_details",
                details.get("success") is True
                and isinstance(details.get("agent_info"), dict)
                and (details.get("discovery_info") or {}).get("agent_name") == first,
                json.dumps(details),
            )
            missing = await call(session, "get_agent_details", {"agent_name": "no-such-agent"})
            check(
                "get_agent_details of a missing agent",
                missing.get("success") is False and missing.get("error") and missing.get("agent_info") is None,
                json.dumps(missing),
            )

            info = await call(session, "get_agents_info", {"agent_names": [first, "no-such-agent"]})
            check(
                "get_agents_info",
                info.get("success") is True
                and info.get("total_found") == 1
                and info.get("total_requested") == 2
                and info.get("not_found") == ["no-such-agent"]
                and [a.get("agent_name") for a in info.get("agents_info", [])] == [first],
                json.dumps(info),
            )

            found = await call(session, "search_agents", {"query": args.query})
            matches = found.get("matching_agents", [])
            check(
                f"search_agents {args.query!r}",
                found.get("success") is True and matches and found.get("total_matches") == len(matches),
                json.dumps(found),
            )
            none = await call(session, "search_agents", {"query": args.query, "search_fields": ["tags"]})
            check(
                "search_agents search_fields",
                none.get("success") is True and isinstance(none.get("matching_agents"), list),
                json.dumps(none),
            )

            # Call the agent the search found, as swarms clients do: by its tool_name, with `task`.
            if matches:
                agent = matches[0]
                summary["called"] = agent["tool_name"]
                for label, tool in (("tool_name", agent["tool_name"]), ("agent_name", agent["agent_name"])):
                    answer = await call(session, tool, {"task": args.task})
                    summary[f"answer by {label}"] = answer
                    check(
                        f"agent call by {label}",
                        answer.get("success") is True
                        and isinstance(answer.get("result"), str)
                        and args.expect in answer["result"]
                        and "error" in answer,
                        json.dumps(answer),
                    )

            server = await call(session, "get_server_info")
            info = server.get("server_info") or {}
            summary["server_info keys"] = sorted(info)
            check(
                "get_server_info",
                server.get("success") is True and isinstance(info.get("total_agents"), int),
                json.dumps(server)[:2000],
            )


def swarms_library(args, summary):
    os.environ.setdefault("SWARMS_TELEMETRY_ON", "false")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("WORKSPACE_DIR", os.path.join(tempfile.gettempdir(), "swarms-client-workspace"))
    from swarms.structs.aop import AOPCluster
    from swarms.tools.mcp_manager import MCPManager

    summary["swarms"] = version("swarms")
    tools = AOPCluster(urls=[args.url]).get_tools(output_type="dict")
    names = [t.get("function", {}).get("name") for t in tools]
    check("AOPCluster.get_tools", "list_agents" in names and summary.get("called") in names, json.dumps(names))

    manager = MCPManager(mcp_urls=[args.url], agent_name="interop")
    listed = manager.call_tool("list_agents", {})
    check("MCPManager list_agents", listed.get("is_error") is False, json.dumps(listed))
    if summary.get("called"):
        answer = manager.call_tool(summary["called"], {"task": args.task})
        payload = json.loads(answer.get("result") or "{}")
        check(
            "MCPManager agent call",
            answer.get("is_error") is False and payload.get("success") is True and args.expect in payload.get("result", ""),
            json.dumps(answer),
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--query", required=True, help="search_agents query that finds the agent to call")
    parser.add_argument("--task", required=True)
    parser.add_argument("--expect", help="text the agent's result contains (default: the task)")
    parser.add_argument("--no-swarms-library", action="store_true")
    args = parser.parse_args()
    args.expect = args.expect if args.expect is not None else args.task

    summary = {"url": args.url, "mcp": version("mcp")}
    try:
        asyncio.run(asyncio.wait_for(by_hand(args, summary), 90))
    except BaseException as e:  # noqa: BLE001 - report whatever broke the walk
        check("MCP SDK walk", False, "".join(traceback.format_exception(e)))
    if not args.no_swarms_library:
        try:
            swarms_library(args, summary)
        except BaseException as e:  # noqa: BLE001
            check("swarms library", False, "".join(traceback.format_exception(e)))
    summary["failures"] = FAILURES
    print("SWARMS-CLIENT " + json.dumps(summary), flush=True)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
