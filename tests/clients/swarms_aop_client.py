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
Part 3, the queue tools through swarms' MCPManager.call_tool() (with --queue-agent NAME, the
agent whose queue to drive; needs the swarms library). swarms 14.0.2 has no client helpers of
its own for them (AOP.get_queue_stats() and the like act on the server's own queues), so they
are called as its AOP server registers them, by name, and answered as every swarms tool:
json.loads of the text. pause_agent_queue -> get_queue_stats (paused) -> resume_agent_queue ->
get_queue_stats (running) -> clear_agent_queue -> get_task_status / cancel_task of an unknown
id -> pause_all_queues / resume_all_queues / clear_all_queues; the same walk passes against a
swarms AOP server. With --submit (the gateway's submit_task; a swarms AOP server queues only
inside its agent tool calls, which wait for the result): tasks submitted to the paused queue
(arguments {"task", "ms": 1}), seen pending in get_task_status and get_queue_stats, one
cancelled with cancel_task (twice: the second is refused), the rest run after
resume_agent_queue, then one more cleared by clear_agent_queue.

Output: `PASS <check>` / `FAIL <check>: <why>` lines, then `SWARMS-CLIENT <json summary>`;
exit status 0 only when every check passed.

usage: python swarms_aop_client.py --url http://127.0.0.1:PORT/mcp --query echo \
         --task "hello" [--expect "hello"] [--no-swarms-library] [--queue-agent NAME [--submit]]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
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


QUEUE_DEADLINE = 60


def queue_tools(args, summary):
    """Part 3: the queue tools through swarms' MCPManager (see the module doc)."""
    from swarms.tools.mcp_manager import MCPManager

    manager = MCPManager(mcp_urls=[args.url], agent_name="interop-queues")
    agent = args.queue_agent

    def tool(name, arguments=None):
        answer = manager.call_tool(name, arguments or {})
        payload = answer.get("result")
        return json.loads(payload) if isinstance(payload, str) else payload

    def stats():
        return tool("get_queue_stats", {"agent_name": agent})

    def status_of(task_id):
        return tool("get_task_status", {"agent_name": agent, "task_id": task_id})

    keys = {"total_tasks", "completed_tasks", "failed_tasks", "pending_tasks", "processing_tasks",
            "average_processing_time", "queue_size", "queue_status"}
    paused = tool("pause_agent_queue", {"agent_name": agent})
    check("pause_agent_queue", paused.get("success") is True, json.dumps(paused))
    now = stats()
    summary["queue stats"] = now
    check(
        "get_queue_stats of a paused queue",
        now.get("success") is True
        and keys <= set(now.get("stats", {}))
        and now["stats"]["queue_status"] == "paused",
        json.dumps(now),
    )

    task_ids = []
    if args.submit:
        for i in range(3):
            submitted = tool(
                "submit_task",
                {"agent_name": agent, "arguments": {"task": f"queued {i}", "ms": 1}, "priority": i},
            )
            check(f"submit_task {i}", submitted.get("success") is True and submitted.get("task_id"),
                  json.dumps(submitted))
            task_ids.append(submitted.get("task_id"))
        waiting = stats()
        check(
            "get_queue_stats counts the pending tasks",
            waiting["stats"]["pending_tasks"] == 3 and waiting["stats"]["queue_size"] == 3,
            json.dumps(waiting),
        )
        first = status_of(task_ids[0])
        check(
            "get_task_status of a pending task",
            first.get("success") is True
            and first["task"]["task_id"] == task_ids[0]
            and first["task"]["status"] == "pending"
            and {"created_at", "result", "error", "retry_count", "max_retries", "priority"} <= set(first["task"]),
            json.dumps(first),
        )
        cancelled = tool("cancel_task", {"agent_name": agent, "task_id": task_ids[0]})
        check("cancel_task", cancelled.get("success") is True, json.dumps(cancelled))
        check("get_task_status after cancel_task", status_of(task_ids[0])["task"]["status"] == "cancelled")
        again = tool("cancel_task", {"agent_name": agent, "task_id": task_ids[0]})
        check("cancel_task of a cancelled task is refused", again.get("success") is False, json.dumps(again))

    resumed = tool("resume_agent_queue", {"agent_name": agent})
    check("resume_agent_queue", resumed.get("success") is True, json.dumps(resumed))
    check("get_queue_stats of a resumed queue", stats()["stats"]["queue_status"] == "running")

    if args.submit:
        deadline = time.monotonic() + QUEUE_DEADLINE
        statuses = {}
        while time.monotonic() < deadline:
            statuses = {i: status_of(i)["task"]["status"] for i in task_ids[1:]}
            if all(s == "completed" for s in statuses.values()):
                break
            time.sleep(0.05)
        check("queued tasks run after resume_agent_queue", all(s == "completed" for s in statuses.values()),
              json.dumps(statuses))
        done = status_of(task_ids[2])["task"]
        summary["completed task"] = done
        check("a completed task's result", (done.get("result") or {}).get("success") is True, json.dumps(done))
        tool("pause_agent_queue", {"agent_name": agent})
        extra = tool("submit_task", {"agent_name": agent, "arguments": {"task": "cleared", "ms": 1}})
        cleared = tool("clear_agent_queue", {"agent_name": agent})
        check("clear_agent_queue cancels the pending task", cleared.get("cleared_tasks") == 1, json.dumps(cleared))
        check("get_task_status of a cleared task", status_of(extra.get("task_id"))["task"]["status"] == "cancelled")
        tool("resume_agent_queue", {"agent_name": agent})
        final = stats()
        summary["final queue stats"] = final
        check(
            "get_queue_stats after the walk",
            final["stats"]["completed_tasks"] == 2 and final["stats"]["queue_size"] == 0,
            json.dumps(final),
        )
    else:
        cleared = tool("clear_agent_queue", {"agent_name": agent})
        check("clear_agent_queue of an empty queue", cleared.get("cleared_tasks") == 0, json.dumps(cleared))

    unknown = status_of("no-such-task")
    check("get_task_status of an unknown task", unknown.get("success") is False, json.dumps(unknown))
    cancel_unknown = tool("cancel_task", {"agent_name": agent, "task_id": "no-such-task"})
    check("cancel_task of an unknown task", cancel_unknown.get("success") is False, json.dumps(cancel_unknown))
    everything = tool("get_queue_stats")
    check(
        "get_queue_stats of every queue",
        everything.get("success") is True and agent in everything.get("stats", {})
        and everything.get("total_agents") == len(everything["stats"]),
        json.dumps(everything),
    )
    for name in ("pause_all_queues", "resume_all_queues", "clear_all_queues"):
        answer = tool(name)
        check(name, answer.get("success") is True and answer.get("total_agents", 0) >= 1, json.dumps(answer))
    summary["queue checks"] = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--query", required=True, help="search_agents query that finds the agent to call")
    parser.add_argument("--task", required=True)
    parser.add_argument("--expect", help="text the agent's result contains (default: the task)")
    parser.add_argument("--no-swarms-library", action="store_true")
    parser.add_argument("--queue-agent", help="drive this agent's queue with the queue tools (part 3)")
    parser.add_argument("--submit", action="store_true", help="queue tasks with submit_task too")
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
        if args.queue_agent:
            try:
                queue_tools(args, summary)
            except BaseException as e:  # noqa: BLE001
                check("queue tools", False, "".join(traceback.format_exception(e)))
    summary["failures"] = FAILURES
    print("SWARMS-CLIENT " + json.dumps(summary), flush=True)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
