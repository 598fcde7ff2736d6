"""The tools actor's MCP client against real MCP servers over stdio: mcp-server-time from PyPI, and small
servers this test writes with the `mcp` SDK that hang, fail or die mid-call. The actor runs its real loop
on a real bus; every server process it started is gone once it stops."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.mcp_client import parse_specs
from actors.tools import TIMER_TOOLS, ToolsActor, ToolsSettings
from bus.messages import ToolCall, ToolCatalog, ToolCatalogAsk, ToolResult
from bus.sockets import BusAddress, BusClient
from tests.helpers import actor_on_bus, processes_mentioning

TIME_SERVER = Path(sys.executable).with_name("mcp-server-time")

FLAKY_SERVER = '''
import os, time
from mcp.server.mcpserver import MCPServer

server = MCPServer("flaky")

@server.tool()
def hang(seconds: int) -> str:
    """Never answers in time."""
    time.sleep(seconds)
    return "late"

@server.tool()
def boom() -> str:
    """Always fails."""
    raise RuntimeError("the boom tool is broken")

@server.tool()
def die() -> str:
    """Takes the server down."""
    os._exit(3)

@server.tool()
def secret() -> str:
    """Not allowed."""
    return "nobody may call this"

server.run("stdio")
'''


def ask(client: BusClient, name: str, arguments: dict[str, Any], call_id: int, timeout_s: float = 20.0) -> ToolResult:
    client.publish(ToolCall(session="kitchen", turn=5, call_id=call_id, name=name, arguments=arguments))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, ToolResult) and env.msg.call_id == call_id:
            return env.msg
    raise AssertionError(f"no answer to call {call_id} ({name}) within {timeout_s:g} s")


def catalogue(client: BusClient, until: list[str] | None = None, timeout_s: float = 20.0) -> list[str]:
    """The actor's catalogue (asked for once); with `until`, the first one offering exactly those tools
    (the actor sends a new one whenever a server's tools come or go)."""
    client.publish(ToolCatalogAsk())
    deadline = time.monotonic() + timeout_s
    names: list[str] = []
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, ToolCatalog):
            names = [tool["function"]["name"] for tool in env.msg.tools]
            if until is None or names == until:
                return names
    raise AssertionError(f"no catalogue {until or ''} within {timeout_s:g} s; last: {names}")


@contextmanager
def tools_actor(bus_address: BusAddress, tmp_path: Path, mcp: list[dict[str, Any]],
                call_timeout_s: float = 5.0) -> Iterator[BusClient]:
    settings = ToolsSettings(timers_path=str(tmp_path / "timers.json"), call_timeout_s=call_timeout_s,
                             start_timeout_s=20.0, mcp=mcp)
    with actor_on_bus(ToolsActor(settings), bus_address, listen=("tool.", "ctl.tools"), timeout_s=40.0) as client:
        yield client
    deadline = time.monotonic() + 10
    while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)  # the SDK ends each server as the actor stops
    assert processes_mentioning(str(tmp_path)) == [], "an MCP server outlived the tools actor"


def test_a_bad_mcp_entry_is_refused_naming_it() -> None:
    for row, why in (({"command": "mcp-server-time"}, "list of strings"), ({"command": []}, "list of strings"),
                     ({"command": ["x"], "allow": "all"}, "allow must be"), ({"command": ["x"], "port": 1}, "unknown"),
                     ({"command": ["x"], "env": {"A": 1}}, "env must be")):
        with pytest.raises(ValueError, match=rf"tools\.mcp\[0\]: .*{why}"):
            parse_specs([row])
    with pytest.raises(ValueError, match="second server named 'x'"):
        parse_specs([{"name": "x", "command": ["a"]}, {"name": "x", "command": ["b"]}])
    (spec,) = parse_specs([{"command": ["/usr/bin/mcp-server-time", "--flag"], "allow": ["*"]}])
    assert spec.name == "mcp-server-time" and spec.command[1:] == ["--flag"]


@pytest.mark.skipif(not TIME_SERVER.exists(), reason="mcp-server-time is not installed in this venv")
def test_the_time_server_from_pypi_answers_over_stdio_with_only_allowed_tools(bus_address: BusAddress,
                                                                             tmp_path: Path) -> None:
    # A copy under this test's folder, so the test can see that no process of it is left.
    server = tmp_path / "mcp-server-time"
    shutil.copy(TIME_SERVER, server)
    mcp = [{"name": "time", "command": [str(server)], "allow": ["get_current_time"]}]
    with tools_actor(bus_address, tmp_path, mcp) as client:
        assert catalogue(client) == [*TIMER_TOOLS, "get_current_time"]  # convert_time is not allowed
        result = ask(client, "get_current_time", {"timezone": "Asia/Tokyo"}, call_id=1)
        assert result.ok and (result.session, result.turn) == ("kitchen", 5), result
        answer = json.loads(result.result)
        assert answer["timezone"] == "Asia/Tokyo" and answer["datetime"].endswith("+09:00")
        refused = ask(client, "convert_time", {"source_timezone": "UTC", "time": "10:00",
                                               "target_timezone": "Asia/Tokyo"}, call_id=2)
        assert not refused.ok and "no running tool is called convert_time" in refused.result


def test_a_hanging_failing_or_dying_server_ends_each_call_with_a_reason(bus_address: BusAddress,
                                                                       tmp_path: Path) -> None:
    script = tmp_path / "flaky_server.py"
    script.write_text(FLAKY_SERVER)
    mcp = [{"name": "flaky", "command": [sys.executable, str(script)], "allow": ["hang", "boom", "die"]}]
    with tools_actor(bus_address, tmp_path, mcp, call_timeout_s=1.0) as client:
        assert catalogue(client) == [*TIMER_TOOLS, "hang", "boom", "die"]
        began = time.monotonic()
        hung = ask(client, "hang", {"seconds": 600}, call_id=1)
        assert not hung.ok and hung.result == "hang on flaky gave no answer within 1 seconds"
        assert time.monotonic() - began < 10  # bounded by the call timeout, not by the server
        failed = ask(client, "boom", {}, call_id=2)
        assert not failed.ok and failed.result.startswith("boom on flaky failed: Error executing tool boom")
        died = ask(client, "die", {}, call_id=3)
        assert not died.ok and died.result.startswith("die on flaky failed")
        # Supervised: the dead server's tools leave the catalogue, it is started again and they come back.
        catalogue(client, until=[*TIMER_TOOLS])
        catalogue(client, until=[*TIMER_TOOLS, "hang", "boom", "die"], timeout_s=30)
        assert ask(client, "boom", {}, call_id=4).result.startswith("boom on flaky failed")


HTTP_SERVER = '''
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("adder")

@server.tool()
def add(a: int, b: int) -> str:
    """Adds two numbers."""
    return str(a + b)

server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
'''


def test_a_streamable_http_server_is_connected_to_by_url(bus_address: BusAddress, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="url must be http"):
        parse_specs([{"url": "ftp://x"}])
    with pytest.raises(ValueError, match="not both"):
        parse_specs([{"url": "http://127.0.0.1:1/mcp", "command": ["x"]}])
    elsewhere = Path(tempfile.mkdtemp(prefix="rr-mcp-http-"))  # the test's own server: not the actor's child
    script = elsewhere / "http_server.py"
    script.write_text(HTTP_SERVER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        mcp = [{"name": "adder", "url": f"http://127.0.0.1:{port}/mcp", "allow": ["add"]}]
        with tools_actor(bus_address, tmp_path, mcp) as client:
            catalogue(client, until=[*TIMER_TOOLS, "add"], timeout_s=40)  # retried until the server listens
            result = ask(client, "add", {"a": 4821, "b": 7396}, call_id=1)
            assert result.ok and result.result == "12217", result
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(elsewhere, ignore_errors=True)
