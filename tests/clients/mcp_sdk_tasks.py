"""Drives the gateway's task tools (docs/protocol.md §10.1) with the official MCP Python SDK
(PyPI `mcp`, tested with 2.3.0) over Streamable HTTP, in the 2025 session era
(`streamable_http_client` + `ClientSession`), as an AOP client written for the Python server
would: submit_task with priorities into a paused queue, resume, read every task's status
until it completed and check they started highest priority first; submit a long task and
cancel it while it runs; an unknown task id; get_queue_stats.

Output: `PASS <check>` / `FAIL <check>: <why>` lines, one `RESULT <json>` line, exit status 0
only when no check failed.

usage: python mcp_sdk_tasks.py --url http://127.0.0.1:PORT/mcp --agent sleeper.finance.acme
"""

import argparse
import json
import sys
import traceback
from importlib.metadata import version

import anyio
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


async def tool(session, name, arguments):
    result = (await session.call_tool(name, arguments)).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    structured = result.get("structuredContent") or {}
    text = "\n".join(b["text"] for b in result.get("content", []) if b.get("type") == "text")
    check(f"{name} text block = structuredContent", json.loads(text) == structured, text)
    return structured


async def wait_status(session, agent, task_id, wanted, deadline=30.0):
    with anyio.fail_after(deadline):
        while True:
            answer = await tool(session, "get_task_status", {"agent_name": agent, "task_id": task_id})
            task = answer.get("task") or {}
            if task.get("status") == wanted:
                return task
            await anyio.sleep(0.02)


async def run(args, summary):
    agent = args.agent
    async with streamable_http_client(args.url) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            paused = await tool(session, "pause_agent_queue", {"agent_name": agent})
            check("pause_agent_queue", paused.get("success") is True, json.dumps(paused))
            ids = {}
            for label, priority in [("low", 0), ("high", 5), ("mid", 2)]:
                answer = await tool(
                    session,
                    "submit_task",
                    {"agent_name": agent, "arguments": {"task": label, "ms": 20}, "priority": priority},
                )
                check(f"submit_task {label}", answer.get("success") is True and answer.get("task_id"), json.dumps(answer))
                ids[label] = answer.get("task_id")
            stats = await tool(session, "get_queue_stats", {"agent_name": agent})
            check("queue_size while paused", stats.get("stats", {}).get("queue_size") == 3, json.dumps(stats))
            resumed = await tool(session, "resume_agent_queue", {"agent_name": agent})
            check("resume_agent_queue", resumed.get("success") is True, json.dumps(resumed))
            started = []
            for label, task_id in ids.items():
                task = await wait_status(session, agent, task_id, "completed")
                for key in ["task_id", "status", "created_at", "result", "error", "retry_count", "max_retries", "priority"]:
                    check(f"task key {key}", key in task, json.dumps(task))
                started.append((task["started_at"], label))
            order = [label for _, label in sorted(started)]
            summary["order"] = order

            long = await tool(
                session, "submit_task", {"agent_name": agent, "arguments": {"task": "long", "ms": 60000}}
            )
            await wait_status(session, agent, long["task_id"], "processing")
            summary["long_task_id"] = long["task_id"]
            cancelled = await tool(session, "cancel_task", {"agent_name": agent, "task_id": long["task_id"]})
            check("cancel_task", cancelled.get("success") is True, json.dumps(cancelled))
            task = await wait_status(session, agent, long["task_id"], "cancelled")
            summary["cancelled_status"] = task["status"]

            unknown = await tool(session, "get_task_status", {"agent_name": agent, "task_id": "no-such-task"})
            check("unknown task id", unknown.get("success") is False and "no-such-task" in unknown.get("error", ""), json.dumps(unknown))
            everything = await tool(session, "get_queue_stats", {})
            summary["stats"] = everything


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--agent", required=True)
    args = parser.parse_args()
    summary = {"mcp": version("mcp")}
    try:
        anyio.run(run, args, summary)
    except BaseException as e:  # noqa: BLE001 - report whatever broke the run
        check("run", False, "".join(traceback.format_exception(e)))
    summary["failures"] = failures
    print("RESULT " + json.dumps(summary), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
