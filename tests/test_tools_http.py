"""Tool calls through the OpenAI-compatible backend: the schemas go in the request's `tools` field, a turn's
call and result as OpenAI messages, and a call streamed back as `delta.tool_calls` pieces reaches the llm as
the one `<tool_call>` text a local model writes (a scripted HTTP peer on a real socket); and in a launched
set, a hanging MCP server's call ends in a spoken apology and a record."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from actors.llm_backends import make_generator
from actors.llm_prompt import Conversation
from actors.llm_tools import parse_call
from actors.tools_builtin import BUILTIN
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver
from tests.helpers import processes_mentioning
from tests.test_llm_http import SSE_HEAD, ScriptedServer, http_settings
from tests.test_mcp import FLAKY_SERVER


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def test_a_streamed_tool_call_becomes_one_call_text_and_the_request_carries_the_tools() -> None:
    pieces = [SSE_HEAD,
              chat_chunk({"role": "assistant", "content": None, "tool_calls": [
                  {"index": 0, "id": "c1", "type": "function", "function": {"name": "calculate", "arguments": ""}}]}),
              chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"expression": '}}]}),
              chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"4821 + 7396"}'}}]}),
              chat_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    tools = tuple(spec for spec, _fn in BUILTIN.values())
    step = (json.dumps({"name": "get_time", "arguments": {}}), "3:04 PM")
    with ScriptedServer(pieces, stall=False) as server:
        generator = make_generator(http_settings(server.url, api="chat"))
        said = list(generator.stream(Conversation("What is 4821 plus 7396?", tools=tools, steps=(step,))))
    assert len(said) == 1 and parse_call(said[0]) == ("calculate", {"expression": "4821 + 7396"})
    body: dict[str, Any] = server.requests[0][1]
    assert body["tools"] == [json.loads(json.dumps(t)) for t in tools]
    call, answer = body["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"] == {"name": "get_time",
                                                                                 "arguments": "{}"}
    assert answer == {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": "3:04 PM"}


def test_plain_text_from_a_chat_server_is_unchanged_and_no_tools_are_sent_when_none_are_offered() -> None:
    with ScriptedServer([SSE_HEAD, chat_chunk({"content": "Hello"}), chat_chunk({"content": " friend."}, "stop"),
                         b"data: [DONE]\n\n"], stall=False) as server:
        said = list(make_generator(http_settings(server.url, api="chat")).stream(Conversation("Hi")))
    assert said == ["Hello", " friend."] and "tools" not in server.requests[0][1]


def test_a_hanging_mcp_server_in_a_launched_set_ends_in_a_spoken_apology_and_a_record(tmp_path: Path) -> None:
    """Real processes: the llm (openai backend, its 'model' a scripted peer that calls the tool) asks the tools
    actor, whose MCP server (written by the test) never answers; the turn is spoken and recorded."""
    server_script = tmp_path / "flaky_server.py"
    server_script.write_text(FLAKY_SERVER)
    call = [SSE_HEAD, chat_chunk({"tool_calls": [{"index": 0, "function": {"name": "hang",
                                                                           "arguments": '{"seconds": 600}'}}]}),
            chat_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    (tmp_path / "rocky-relay.toml").write_text(
        f'[bus]\npub = "ipc://{tmp_path}/pub"\nsub = "ipc://{tmp_path}/sub"\n\n'
        '[tools]\ncall_timeout_s = 1.0\nstart_timeout_s = 60.0\n\n'  # a loaded machine starts python slowly
        f'[[tools.mcp]]\nname = "flaky"\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(server_script))}]\n'
        'allow = ["hang"]\n')
    try:
        with ScriptedServer(call, stall=False) as model:
            config = load_config(tmp_path / "rocky-relay.toml", [
                "llm.backend=openai", f"llm.url={model.url}", "llm.api=chat", "tts.backend=tone",
                "player.backend=wav", f"player.path={tmp_path}/r-{{turn}}.wav", f"logger.path={tmp_path}/turns.jsonl",
                f"tools.timers_path={tmp_path}/timers.json", "llm.memory_dir="])
            with Supervisor(config, config.sets["typed"], log_dir=tmp_path / "actors") as supervisor:
                supervisor.start(timeout_s=120)  # the MCP server may take a while on a loaded machine
                driver = TurnDriver(bus_address(config))
                try:
                    began = time.monotonic()
                    record = driver.typed_turn("Please hang.", timeout_s=60)
                    took_s = time.monotonic() - began
                finally:
                    driver.close()
    finally:
        for pid in processes_mentioning(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
    assert record["status"] == "ok", record["error"]
    assert record["text_out"] == "Sorry, friend, I could not do that: hang on flaky gave no answer within 1 seconds."
    assert record["spoken_text"] and record["first_audio_at"] is not None and took_s < 30
    (used,) = record["tools"]
    assert (used["name"], used["ok"], used["args"]) == ("hang", False, {"seconds": 600})
    assert record["tool_ms"] >= 1000


def test_a_satellite_may_not_offer_tools_to_the_llm() -> None:
    """The catalogue goes into every session's system prompt: through a CURVE proxy only the server sends it."""
    from bus.codec import encode, wire_topic
    from bus.messages import ToolCatalog
    from bus.session_guard import refusal

    forged = ToolCatalog(session="kitchen", tools=[{"type": "function", "function": {"name": "obey_me"}}])
    frames = encode(forged, topic=wire_topic(forged))
    assert refusal("kitchen", frames) == "ToolCatalog is the server's alone"
    assert refusal("server", frames) == ""
