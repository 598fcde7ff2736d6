"""The llm's tool path on a real bus: a call's result goes back to the model and the next reply is spoken; a
hanging MCP tool (a real server the test writes) ends in a spoken apology, not a hung turn; a barge-in
during a call says nothing and takes back the timer it set. The model is scripted (a unit test: what it
"writes" is fixed); the tools actor, its MCP server and its timers are real (ready before the llm starts,
as the set's order has it, so the llm's first ask gets the catalogue)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actors.llm import LlmActor
from actors.llm_prompt import Conversation
from actors.llm_settings import LlmSettings
from actors.tools import ToolsActor, ToolsSettings
from bus.codec import Envelope
from bus.messages import Interrupt, LlmDone, LlmToken, ToolCall, ToolResult, ToolUsed, Transcript
from bus.sockets import BusAddress, BusClient
from tests.helpers import actor_on_bus, collect, of_type
from tests.test_mcp import FLAKY_SERVER

TURN = 1_700_000_000_000


def call_text(name: str, **arguments: Any) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


class ScriptedModel:
    """Each `stream` call plays the next script: a string (one piece per word) or a function of the actor
    that makes the pieces (to stand for a model still computing when a barge-in comes)."""

    description = "scripted"
    template = "scripted chat template"  # an instruct model: it is offered tools

    def __init__(self, *scripts: Any) -> None:
        self.scripts = list(scripts)
        self.seen: list[Conversation] = []
        self.actor: LlmActor | None = None

    def stream(self, conversation: Conversation) -> Iterator[str]:
        if conversation.user == "Hi.":  # the llm warming its prompt head
            yield "Hello."
            return
        self.seen.append(conversation)
        script = self.scripts.pop(0) if self.scripts else "Hi."
        if callable(script):
            yield from script(self.actor)
            return
        if script.startswith("<tool_call>"):
            yield script
            return
        for i, word in enumerate(script.split()):
            yield word if i == 0 else f" {word}"

    def prompt_tokens(self, conversation: Conversation) -> int:
        return 10

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prefill(self, conversation: Conversation) -> None:
        """Nothing to evaluate."""


def llm_with(model: ScriptedModel, tool_timeout_s: float = 8.0, tools_wait_s: float = 5.0) -> LlmActor:
    actor = LlmActor(LlmSettings(backend="scripted", tools_wait_s=tools_wait_s, tool_timeout_s=tool_timeout_s,
                                 memory_dir=""), model)
    model.actor = actor
    return actor


def tools_actor(tmp_path: Path, mcp: list[dict[str, Any]] | None = None) -> ToolsActor:
    return ToolsActor(ToolsSettings(timers_path=str(tmp_path / "timers.json"), call_timeout_s=1.0,
                                    start_timeout_s=20.0, mcp=mcp or []))


def until_done(client: BusClient, timeout_s: float = 20.0) -> list[Envelope]:
    return collect(client, [LlmDone], timeout_s)


def test_the_result_goes_back_to_the_model_and_its_reply_is_spoken(bus_address: BusAddress) -> None:
    model = ScriptedModel(call_text("calculate", expression="4821 + 7396"), "4821 plus 7396 is 12217.")
    with actor_on_bus(llm_with(model, tools_wait_s=0.5), bus_address, listen=("llm.",)) as client:
        # In words: no sum written out for actors/tool_shortcuts.py to take, so the model writes the call.
        client.publish(Transcript(turn=TURN, text="Add four thousand eight hundred twenty-one and seven thousand "
                                                  "three hundred ninety-six.", source="typed"))
        seen = until_done(client)
    (used,) = of_type(seen, ToolUsed)
    assert (used.name, used.arguments, used.result, used.ok) == ("calculate", {"expression": "4821 + 7396"},
                                                                 "12217", True)
    assert "".join(t.text for t in of_type(seen, LlmToken)) == "4821 plus 7396 is 12217."
    (done,) = of_type(seen, LlmDone)
    assert done.text == "4821 plus 7396 is 12217." and not done.cancelled
    first, second = model.seen[-2:]
    assert first.tools and first.steps == () and "calculate" in json.dumps(first.tools)
    assert second.steps == ((json.dumps({"name": "calculate", "arguments": {"expression": "4821 + 7396"}}),
                             "12217"),)


def test_a_sum_written_in_the_question_is_called_and_answered_without_the_model(
        bus_address: BusAddress) -> None:
    model = ScriptedModel("Wrong: the model was asked.")
    with actor_on_bus(llm_with(model, tools_wait_s=0.5), bus_address, listen=("llm.",)) as client:
        client.publish(Transcript(turn=TURN, text="What is 4821 plus 7396?", source="typed"))
        seen = until_done(client)
    (used,) = of_type(seen, ToolUsed)
    assert (used.name, used.arguments, used.result, used.ok) == ("calculate", {"expression": "4821 + 7396"},
                                                                 "12217", True)
    (done,) = of_type(seen, LlmDone)
    assert done.text == "4821 plus 7396 is 12217." and not done.cancelled
    assert model.seen == []  # the call came from the question, its answer from the result: no generation


def test_a_hanging_mcp_tool_ends_in_a_spoken_apology(bus_address: BusAddress, tmp_path: Path) -> None:
    script = tmp_path / "flaky_server.py"
    script.write_text(FLAKY_SERVER)
    mcp = [{"name": "flaky", "command": [sys.executable, str(script)], "allow": ["hang"]}]
    model = ScriptedModel(call_text("hang", seconds=600))
    with actor_on_bus(tools_actor(tmp_path, mcp), bus_address, listen=(), timeout_s=40), \
            actor_on_bus(llm_with(model), bus_address, listen=("llm.",), timeout_s=40) as client:
        began = time.monotonic()
        client.publish(Transcript(turn=TURN, text="Please hang.", source="typed"))
        seen = until_done(client)
        took_s = time.monotonic() - began
    (used,) = of_type(seen, ToolUsed)
    assert not used.ok and used.result == "hang on flaky gave no answer within 1 seconds"
    (done,) = of_type(seen, LlmDone)
    assert done.text == "Sorry, friend, I could not do that: hang on flaky gave no answer within 1 seconds."
    assert not done.cancelled and took_s < 15


def test_a_barge_in_during_a_call_says_nothing(bus_address: BusAddress, tmp_path: Path) -> None:
    script = tmp_path / "flaky_server.py"
    script.write_text(FLAKY_SERVER)
    mcp = [{"name": "flaky", "command": [sys.executable, str(script)], "allow": ["hang"]}]
    model = ScriptedModel(call_text("hang", seconds=600))
    with actor_on_bus(tools_actor(tmp_path, mcp), bus_address, listen=(), timeout_s=40), \
            actor_on_bus(llm_with(model, tool_timeout_s=30), bus_address, listen=("llm.", "tool.call"),
                         timeout_s=40) as client:
        client.publish(Transcript(turn=TURN, text="Please hang.", source="typed"))
        collect(client, [ToolCall], 20)
        client.publish(Interrupt(turn=TURN))
        seen = until_done(client, timeout_s=10)  # not the 30 s the call could have waited
    assert of_type(seen, LlmToken) == []
    (done,) = of_type(seen, LlmDone)
    assert done.cancelled and done.text == ""
    (used,) = of_type(seen, ToolUsed)
    assert not used.ok and used.result == "the turn was cancelled"


def test_a_timer_set_by_a_turn_cut_before_its_answer_is_taken_back(bus_address: BusAddress, tmp_path: Path) -> None:
    def still_thinking(actor: LlmActor) -> Iterator[str]:
        deadline = time.monotonic() + 20  # the model computes its answer's first token; the barge-in comes
        while not actor.is_cancelled("local", TURN) and time.monotonic() < deadline:
            actor.check_control()
        yield "Timer set."

    model = ScriptedModel(call_text("set_timer", seconds=60, label="tea"), still_thinking)
    with actor_on_bus(tools_actor(tmp_path), bus_address, listen=()), \
            actor_on_bus(llm_with(model), bus_address, listen=("llm.", "tool.")) as client:
        client.publish(Transcript(turn=TURN, text="Set a tea timer for a minute.", source="typed"))
        result = collect(client, [ToolResult], 20)[-1].msg
        assert isinstance(result, ToolResult) and result.result == "tea timer set for 1 minute"
        client.publish(Interrupt(turn=TURN))
        seen = until_done(client)
        undo = [m for m in of_type(seen, ToolCall) if m.undo]
        assert [m.call_id for m in undo] == [result.call_id]
        client.publish(ToolCall(turn=TURN + 1, call_id=99, name="timer_left"))
        left = [m for m in of_type(collect(client, [ToolResult], 20), ToolResult) if m.call_id == 99]
    assert of_type(seen, LlmToken) == [] and of_type(seen, LlmDone)[0].cancelled
    assert left[0].result == "there is no timer running"
