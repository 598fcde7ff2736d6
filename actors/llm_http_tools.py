"""Tool calls over an OpenAI-compatible chat server: the request's `tools` and messages, the streamed answer.

The server gets the schemas in the request's `tools` field and this turn's calls as OpenAI messages (an
assistant message with `tool_calls`, then a `tool` message with the same `tool_call_id`). What it streams
back as `delta.tool_calls` (a name, then the arguments in pieces) is put together and handed to the llm as
the text `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, the same form a local model writes, so
one path (actors/llm_tools.py) spots, runs and answers every call.
"""

from __future__ import annotations

import json
from typing import Any

from actors.llm_prompt import Conversation

CALL_OPEN, CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"


def chat_request_fields(conversation: Conversation) -> dict[str, Any]:
    """`messages` (and `tools` when any are offered) for a /chat/completions body."""
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(conversation.messages()):
        content = message["content"]
        if message["role"] == "assistant" and content.startswith(CALL_OPEN):
            call = json.loads(content[len(CALL_OPEN):-len(CALL_CLOSE)])
            messages.append({"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{i}", "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]})
        elif message["role"] == "tool":
            messages.append({"role": "tool", "tool_call_id": f"call_{i - 1}", "content": content})
        else:
            messages.append(dict(message))
    fields: dict[str, Any] = {"messages": messages}
    if conversation.tools:
        fields["tools"] = list(conversation.tools)
    return fields


class StreamedCalls:
    """`delta.tool_calls` pieces of one streamed reply, put together by their index."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        if not isinstance(deltas, list):
            return
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", 0)
            call = self.calls.setdefault(index if isinstance(index, int) else 0, {"name": "", "arguments": ""})
            raw = delta.get("function")
            function: dict[str, Any] = raw if isinstance(raw, dict) else {}
            if isinstance(function.get("name"), str):
                call["name"] += function["name"]
            if isinstance(function.get("arguments"), str):
                call["arguments"] += function["arguments"]

    def as_text(self) -> str:
        """The first call as a local model would write it; empty when the server made none."""
        if not self.calls:
            return ""
        call = self.calls[min(self.calls)]
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = call["arguments"]  # actors/llm_tools.py says the arguments were not valid JSON
        return f"{CALL_OPEN}{json.dumps({'name': call['name'], 'arguments': arguments})}{CALL_CLOSE}"
