"""Tool calls through the OpenAI-compatible backend: the schemas go in the request's `tools` field, a turn's
call and result as OpenAI messages, and a call streamed back as `delta.tool_calls` pieces reaches the llm as
the one `<tool_call>` text a local model writes (a scripted HTTP peer on a real socket)."""

from __future__ import annotations

import json
from typing import Any

from actors.llm_backends import make_generator
from actors.llm_prompt import Conversation
from actors.llm_tools import parse_call
from actors.tools_builtin import BUILTIN
from tests.test_llm_http import SSE_HEAD, ScriptedServer, http_settings


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
