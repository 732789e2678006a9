"""Drives the gateway's task tools (docs/protocol.md §10.1) with the official MCP Python SDK
(PyPI `mcp`, tested with 2.3.0) over Streamable HTTP, in the 2025 session era
(`streamable_http_client` + `ClientSession`), as an AOP client written for the Python server
would: submit_task with priorities into a paused queue, resume, read every task's status
until it completed and check they started highest priority first; submit a long task and
cancel it while it runs; an unknown task id; get_queue_stats.

Then the MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663), in the 2026-07-28
era (`mcp.Client`, which probes `server/discover`). mcp 2.3.0 has no tasks client of its own:
its generic extension API (SEP-2133: `ClientExtension`, a `ResultClaim` on `tools/call` keyed
by `resultType`) is how a client takes part, so the `Tasks` extension below declares
`io.modelcontextprotocol/tasks` in every request's capabilities, claims `resultType: "task"`
and resolves it by polling `tasks/get` (sent with the SDK's `send_request`, which sets the
`Mcp-Name` header to the task id as SEP-2663 asks). Checked: `client.call_tool` of the agent
tool returns the agent's result through a task; with `allow_claimed=True` the raw task,
`working`, visible to `get_task_status` under the same id; `tasks/cancel` of a running task
(the queue says `cancelled`); `tasks/get` of an unknown id is JSON-RPC error -32602.

Output: `PASS <check>` / `FAIL <check>: <why>` lines, one `RESULT <json>` line, exit status 0
only when no check failed.

usage: python mcp_sdk_tasks.py --url http://127.0.0.1:PORT/mcp --agent sleeper.finance.acme
"""

import argparse
import json
import sys
import traceback
from importlib.metadata import version

from typing import Any, Literal

import anyio
from mcp import Client, ClientSession
from mcp.client.extension import ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict

TASKS = "io.modelcontextprotocol/tasks"

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


class TaskParams(RequestParams):
    task_id: str


class GetTask(Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class TaskResult(Result):
    """`CreateTaskResult` and `tasks/get`'s result: the task's fields, whatever the status."""

    model_config = ConfigDict(extra="allow")
    result_type: str | None = None
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class CreatedTask(TaskResult):
    result_type: Literal["task"]


async def get_task(session, task_id):
    return await session.send_request(GetTask(params=TaskParams(task_id=task_id)), TaskResult)


async def poll_until_finished(session, task_id, deadline=30.0):
    with anyio.fail_after(deadline):
        while True:
            task = await get_task(session, task_id)
            if task.status in ("completed", "failed", "cancelled"):
                return task
            await anyio.sleep((task.poll_interval_ms or 100) / 1000)


class Tasks(ClientExtension):
    """SEP-2663 on mcp 2.3.0's extension API: a task handle is polled to its result."""

    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self.resolve)]

    async def resolve(self, created, ctx):
        task = await poll_until_finished(ctx.session, created.task_id)
        if task.status == "completed":
            return CallToolResult.model_validate(task.result)
        raise RuntimeError(f"task {task.task_id} ended {task.status}: {task.error or task.status_message}")


async def run_tasks_extension(args, summary):
    agent = args.agent
    tool_name = agent.replace(".", "_")
    async with Client(args.url, extensions=[Tasks()]) as client:
        summary["tasks_protocol_version"] = client.protocol_version
        declared = (client.server_capabilities.extensions or {}).get(TASKS)
        check("the server advertises the tasks extension", declared is not None, str(client.server_capabilities))

        async def completed_on_queue():
            stats = await client.call_tool("get_queue_stats", {"agent_name": agent})
            return json.loads(stats.content[0].text)["stats"]["completed_tasks"]

        # Transparent: call_tool drives the task to the agent's result; the queue ran it.
        before = await completed_on_queue()
        result = await client.call_tool(tool_name, {"task": "through a task", "ms": 50})
        structured = result.structured_content or {}
        check(
            "call_tool through a task",
            structured.get("success") is True and structured.get("result") == "slept 50 ms",
            result.model_dump_json(),
        )
        check("the task ran on the agent's queue", await completed_on_queue() == before + 1)

        # The raw task: working at first, the same id for the queue tools, cancelled over MCP.
        created = await client.session.call_tool(
            tool_name, {"task": "long", "ms": 60000}, allow_claimed=True
        )
        check("a task handle", isinstance(created, CreatedTask), repr(created))
        task_id = created.task_id
        summary["mcp_task_id"] = task_id
        check("created working", created.status == "working" and created.ttl_ms is None, repr(created))
        with anyio.fail_after(30):
            while True:
                queued = json.loads(
                    (await client.call_tool("get_task_status", {"agent_name": agent, "task_id": task_id}))
                    .content[0]
                    .text
                )
                if queued["task"]["status"] == "processing":
                    break
                await anyio.sleep(0.02)
        running = await get_task(client.session, task_id)
        check("tasks/get of a running task", running.status == "working", repr(running))
        await client.session.send_request(CancelTask(params=TaskParams(task_id=task_id)), Result)
        ended = await poll_until_finished(client.session, task_id)
        summary["mcp_cancelled_status"] = ended.status
        check("tasks/cancel", ended.status == "cancelled", repr(ended))

        try:
            await get_task(client.session, "no-such-task")
            check("tasks/get of an unknown task", False, "no error")
        except MCPError as error:
            summary["unknown_task_error"] = error.error.code
            check(
                "tasks/get of an unknown task",
                error.error.code == -32602 and "no-such-task" in error.error.message,
                str(error.error),
            )


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
    try:
        anyio.run(run_tasks_extension, args, summary)
    except BaseException as e:  # noqa: BLE001
        check("tasks extension", False, "".join(traceback.format_exception(e)))
    summary["failures"] = failures
    print("RESULT " + json.dumps(summary), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
