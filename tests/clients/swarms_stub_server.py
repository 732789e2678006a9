#!/usr/bin/env python3
"""A real swarms AOP server (swarms 14.0.2 `swarms.structs.aop.AOP`, on FastMCP from `mcp<2`)
whose agents call no LLM, for tests/interop/mcp_clients.rs: the gateway calls these agents as
endpoints of a zone, and tests/clients/swarms_aop_client.py runs against it as a control.

Agents (real `swarms.Agent` subclasses with run() overridden, or duck-typed with --duck):
  echo-agent  run() returns "echo: <task>"                       (instant)
  sleeper     run() sleeps --sleep seconds (default 1.0), returns "slept <s>s: <task>"
  failer      (only with --failer) run() always raises RuntimeError("stub failure: <task>")

Each agent is a tool taking `task` (and img, imgs, correct_answer, max_retries) that answers
one JSON text block {result, success, error, task_id}; swarms runs calls one at a time.

Closed network: telemetry off (SWARMS_TELEMETRY_ON=false), litellm's bundled cost map
(LITELLM_LOCAL_MODEL_COST_MAP=True) and WORKSPACE_DIR in a temporary directory, all set
before swarms is imported unless the environment already sets them. Importing swarms takes
3-8 s: wait for the port, do not sleep a fixed time.

Usage:
  python swarms_stub_server.py --port 8765                    # streamable-http at http://127.0.0.1:8765/mcp
  python swarms_stub_server.py --port 8765 --transport sse    # SSE at /sse (+ POST /messages/)
  python swarms_stub_server.py --port 8765 --no-queue         # direct execution, no TaskQueue
  python swarms_stub_server.py --port 8765 --duck             # duck-typed agents instead of Agent subclasses
"""

import argparse
import os
import sys
import tempfile
import time

# --- closed-network safety: must run before `import swarms` -----------------
# OpenTelemetry export to swarms' telemetry endpoint is ON by default; this turns it off.
os.environ.setdefault("SWARMS_TELEMETRY_ON", "false")
# litellm (imported by swarms at import time) fetches its model cost map from
# raw.githubusercontent.com unless this is set.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# swarms creates $WORKSPACE_DIR (default ./agent_workspace) with logs at import.
if "WORKSPACE_DIR" not in os.environ:
    os.environ["WORKSPACE_DIR"] = tempfile.mkdtemp(prefix="swarms-stub-workspace-")
# Leave loguru quiet during import (bootup() reads this).
os.environ.setdefault("SWARMS_VERBOSE_GLOBAL", "False")
# ---------------------------------------------------------------------------

_t0 = time.time()
from swarms import Agent  # noqa: E402
from swarms.structs.aop import AOP  # noqa: E402

IMPORT_SECONDS = time.time() - _t0


def make_agent_classes(sleep_s: float):
    class EchoAgent(Agent):
        """A real swarms Agent whose run() never calls an LLM."""

        def run(self, task=None, img=None, imgs=None, correct_answer=None, *args, **kwargs):
            return f"echo: {task}"

    class SleeperAgent(Agent):
        def run(self, task=None, img=None, imgs=None, correct_answer=None, *args, **kwargs):
            time.sleep(sleep_s)
            return f"slept {sleep_s}s: {task}"

    class FailerAgent(Agent):
        def run(self, task=None, img=None, imgs=None, correct_answer=None, *args, **kwargs):
            raise RuntimeError(f"stub failure: {task}")

    return EchoAgent, SleeperAgent, FailerAgent


class DuckAgent:
    """Minimal duck-typed object: everything AOP reads, nothing else.

    AOP reads agent.agent_name and agent.agent_description directly, and
    getattr()s system_prompt, tags, capabilities, role, model_name, max_loops,
    temperature, max_tokens (with defaults). It calls
    agent.run(task=, img=, imgs=, correct_answer=).
    """

    def __init__(self, agent_name, agent_description, system_prompt, tags, capabilities, fn):
        self.agent_name = agent_name
        self.agent_description = agent_description
        self.system_prompt = system_prompt
        self.tags = tags
        self.capabilities = capabilities
        self.model_name = "stub"
        self._fn = fn

    def run(self, task=None, img=None, imgs=None, correct_answer=None, **kwargs):
        return self._fn(task)


# Common Agent kwargs that keep construction silent and offline.
AGENT_COMMON = dict(
    model_name="gpt-4o-mini",  # a name litellm knows: avoids "Provider List" noise; never called
    max_loops=1,
    max_tokens=4096,
    context_length=16000,
    print_on=False,
    persistent_memory=False,
    context_compression=False,
)


def build_agents(args):
    specs = [
        dict(
            agent_name="echo-agent",
            agent_description="Echoes the task back, prefixed with 'echo: '.",
            system_prompt="You are a deterministic echo stub. " * 10,  # >200 chars: shows truncation
            tags=["echo", "test"],
            capabilities=["echo", "text"],
        ),
        dict(
            agent_name="sleeper",
            agent_description="Sleeps, then returns the task.",
            system_prompt="You sleep.",
            tags=["slow"],
            capabilities=["sleep"],
        ),
    ]
    if args.failer:
        specs.append(
            dict(
                agent_name="failer",
                agent_description="Always raises.",
                system_prompt="You fail.",
                tags=["error"],
                capabilities=["fail"],
            )
        )

    if args.duck:
        fns = {
            "echo-agent": lambda t: f"echo: {t}",
            "sleeper": lambda t: (time.sleep(args.sleep), f"slept {args.sleep}s: {t}")[1],
            "failer": lambda t: (_ for _ in ()).throw(RuntimeError(f"stub failure: {t}")),
        }
        return [DuckAgent(fn=fns[s["agent_name"]], **s) for s in specs]

    EchoAgent, SleeperAgent, FailerAgent = make_agent_classes(args.sleep)
    cls = {"echo-agent": EchoAgent, "sleeper": SleeperAgent, "failer": FailerAgent}
    return [cls[s["agent_name"]](**s, **AGENT_COMMON) for s in specs]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--transport", default="streamable-http", choices=["streamable-http", "sse", "stdio"])
    p.add_argument("--server-name", default="Stub AOP Cluster")
    p.add_argument("--no-queue", action="store_true", help="queue_enabled=False (direct execution)")
    p.add_argument("--workers", type=int, default=1, help="max_workers_per_agent (default 1, as AOP)")
    p.add_argument("--sleep", type=float, default=1.0, help="sleeper's sleep in seconds")
    p.add_argument("--failer", action="store_true", help="add the always-failing 'failer' agent")
    p.add_argument("--duck", action="store_true", help="use duck-typed agents instead of Agent subclasses")
    p.add_argument("--add-later", action="store_true",
                   help="construct AOP without agents and call add_agent() afterwards (changes tools/list order)")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--stateless", action="store_true", help="pass stateless_http=True through to FastMCP")
    p.add_argument("--json-response", action="store_true", help="pass json_response=True through to FastMCP")
    args = p.parse_args()

    print(f"[stub] swarms import took {IMPORT_SECONDS:.2f}s", file=sys.stderr, flush=True)
    agents = build_agents(args)

    extra = {}
    if args.stateless:
        extra["stateless_http"] = True
    if args.json_response:
        extra["json_response"] = True

    aop = AOP(
        server_name=args.server_name,
        description="Stub cluster for gateway compatibility tests",
        agents=None if args.add_later else agents,
        port=args.port,
        transport=args.transport,
        verbose=False,
        queue_enabled=not args.no_queue,
        max_workers_per_agent=args.workers,
        log_level=args.log_level,
        **extra,
    )
    if args.add_later:
        for a in agents:
            aop.add_agent(a)

    s = aop.mcp_server.settings
    print(
        f"[stub] serving {args.transport} on {s.host}:{s.port} "
        f"(streamable_http_path={s.streamable_http_path}, sse_path={s.sse_path}, "
        f"message_path={s.message_path}); agents={aop.list_agents()}",
        file=sys.stderr,
        flush=True,
    )
    aop.run()


if __name__ == "__main__":
    main()
