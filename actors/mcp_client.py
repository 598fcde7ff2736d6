"""MCP servers as supervised children of the tools actor: started over stdio, their allowed tools offered.

Each `[[tools.mcp]]` entry names a server (`name`, `command = [...]`, `allow = [...]`, optional `env`; or
`url = "http://host:port/mcp"` for a streamable-HTTP server that runs on its own). The
`mcp` SDK's stdio client runs them on one asyncio loop in a background thread, so the actor's own loop
never blocks: a call returns a `concurrent.futures.Future`. A server that does not start, stops answering
pings or dies is restarted with backoff (1 s doubling to 30 s), like an actor; while it is down its tools
are out of the catalogue. Only tools in a server's `allow` list are offered (`["*"]`: all of them), with
descriptions cut short, since every word of a schema sits in the model's prompt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.tools_builtin import ToolError

log = structlog.get_logger("mcp")
MAX_DESCRIPTION_CHARS = 90
PING_EVERY_S = 5.0
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
MAX_RESULT_CHARS = 2000
"""Of a tool's answer, what the model reads (the prompt is small)."""


@dataclass(frozen=True)
class McpServerSpec:
    name: str
    command: list[str]
    """The server to start (stdio); empty when `url` names one already running."""
    allow: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    """A streamable-HTTP server (http://host:port/mcp), not started here: only connected to, and again when lost."""


def parse_specs(rows: list[dict[str, Any]]) -> list[McpServerSpec]:
    """`[[tools.mcp]]` tables checked: a bad entry is an error naming it and what to fix."""
    specs: list[McpServerSpec] = []
    for i, row in enumerate(rows):
        where = f"tools.mcp[{i}]"
        unknown = set(row) - {"name", "command", "allow", "env", "url"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (use name, command or url, allow, env)")
        url, command = row.get("url", ""), row.get("command", [] if "url" in row else None)
        if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
            raise ValueError(f"{where}: url must be http://HOST:PORT/PATH of a streamable-HTTP MCP server")
        if (url and command) or (not url and not (isinstance(command, list) and command
                                                  and all(isinstance(c, str) and c for c in command))):
            raise ValueError(f"{where}: command must be a list of strings, e.g. [\"mcp-server-time\"] "
                             "(or give url instead, not both)")
        allow, env = row.get("allow", []), row.get("env", {})
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise ValueError(f"{where}: allow must be a list of tool names (or [\"*\"])")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError(f"{where}: env must be a table of strings")
        name = str(row.get("name") or (os.path.basename(command[0]) if command else url))
        if name in {s.name for s in specs}:
            raise ValueError(f"{where}: a second server named {name!r}; give each a name")
        specs.append(McpServerSpec(name, list(command or []), list(allow), dict(env), url))
    return specs


def _short(text: str | None, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    first = (text or "").strip().split("\n")[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def offered_schema(tool: Any) -> dict[str, Any]:
    """An MCP tool as a short OpenAI-style function schema (titles dropped, descriptions cut)."""
    params = dict(tool.input_schema or {"type": "object", "properties": {}})
    properties = {key: {k: (_short(v, 60) if k == "description" else v) for k, v in prop.items() if k != "title"}
                  for key, prop in (params.get("properties") or {}).items()}
    parameters = {"type": "object", "properties": properties, "required": list(params.get("required", []))}
    return {"type": "function", "function": {"name": tool.name, "description": _short(tool.description),
                                             "parameters": parameters}}


class McpServer:
    """One server: kept running by `supervise`, its session used by `call`."""

    def __init__(self, spec: McpServerSpec, start_timeout_s: float) -> None:
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.session: Any = None
        self.tools: dict[str, dict[str, Any]] = {}
        self.starts = 0
        self.problem = ""
        self.broken: asyncio.Event | None = None

    async def supervise(self) -> None:
        failures = 0
        while True:
            self.starts += 1
            try:
                await self._serve()
                failures = 0
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # ExceptionGroups from the SDK's task groups included
                self.problem = f"{type(exc).__name__}: {exc}"
                log.warning("mcp_server_down", server=self.spec.name, error=self.problem)
            self.session, self.tools = None, {}
            await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1

    def _transport(self, quiet: Any) -> Any:
        if self.spec.url:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(self.spec.url)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=self.spec.command[0], args=self.spec.command[1:],
                                       env={**os.environ, **self.spec.env} if self.spec.env else None)
        return stdio_client(params, errlog=quiet)

    async def _serve(self) -> None:
        from mcp import ClientSession

        with open(os.devnull, "w") as quiet:  # a server's stderr chatter is not ours to print
            async with self._transport(quiet) as (read, write), ClientSession(read, write) as session:
                await asyncio.wait_for(session.initialize(), self.start_timeout_s)
                listed = await asyncio.wait_for(session.list_tools(), self.start_timeout_s)
                everything = "*" in self.spec.allow
                self.tools = {t.name: offered_schema(t) for t in listed.tools
                              if everything or t.name in self.spec.allow}
                self.session, self.problem, self.broken = session, "", asyncio.Event()
                log.info("mcp_server_up", server=self.spec.name, offered=sorted(self.tools),
                         not_allowed=sorted({t.name for t in listed.tools} - set(self.tools)))
                while True:  # alive while it answers pings and no call found it broken
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.broken.wait(), PING_EVERY_S)
                    if self.broken.is_set():
                        raise ConnectionError("a call found the server gone")
                    await asyncio.wait_for(session.send_ping(), self.start_timeout_s)

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> str:
        session = self.session
        if session is None or name not in self.tools:
            raise ToolError(f"the {self.spec.name} server is not running" + (f" ({self.problem})"
                                                                            if self.problem else ""))
        try:
            result = await asyncio.wait_for(session.call_tool(name, arguments), timeout_s)
        except TimeoutError:
            raise ToolError(f"{name} on {self.spec.name} gave no answer within {timeout_s:g} seconds") from None
        except Exception as exc:
            if self.broken is not None:
                self.broken.set()
            raise ToolError(f"{name} on {self.spec.name} failed: {_short(str(exc)) or type(exc).__name__}") from exc
        text = " ".join(str(getattr(c, "text", "")) for c in getattr(result, "content", []) or []).strip()
        if getattr(result, "is_error", False):
            raise ToolError(f"{name} on {self.spec.name} failed: {_short(text) or 'no reason given'}")
        return text[:MAX_RESULT_CHARS] or "(no output)"


class McpHub:
    """Every configured server on one background event loop."""

    def __init__(self, specs: list[McpServerSpec], start_timeout_s: float = 10.0) -> None:
        self.servers = [McpServer(spec, start_timeout_s) for spec in specs]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True)
        self.tasks: list[concurrent.futures.Future[None]] = []

    def start(self) -> None:
        if not self.servers:
            return
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(server.supervise(), self.loop) for server in self.servers]

    def catalogue(self) -> dict[str, tuple[McpServer, dict[str, Any]]]:
        """Offered tool name -> (its server, its schema); the first server to offer a name keeps it."""
        offered: dict[str, tuple[McpServer, dict[str, Any]]] = {}
        for server in self.servers:
            for name, schema in list(server.tools.items()):
                offered.setdefault(name, (server, schema))
        return offered

    def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> concurrent.futures.Future[str]:
        entry = self.catalogue().get(name)
        if entry is None:
            failed: concurrent.futures.Future[str] = concurrent.futures.Future()
            failed.set_exception(ToolError(f"no running tool is called {name}"))
            return failed
        return asyncio.run_coroutine_threadsafe(entry[0].call(name, arguments, timeout_s), self.loop)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel the supervisors (the SDK then ends each server process) and stop the loop."""
        if not self.thread.is_alive():
            return
        for task in self.tasks:
            task.cancel()
        done = threading.Event()

        async def drain() -> None:
            pending = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            await asyncio.wait(pending, timeout=timeout_s)
            done.set()

        asyncio.run_coroutine_threadsafe(drain(), self.loop)
        done.wait(timeout_s + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout_s)
