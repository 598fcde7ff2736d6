"""Tool calling in the llm actor: which tools the model sees, spotting a call, running it, the next round.

The model sees the tools as OpenAI-style function schemas (its chat template puts them in the system
message, so they stay in the cached prompt head). A reply that starts with text is streamed as always; one
that starts like a call (`<tool_call>`, or the ```json / `{` this Coder model tends to write instead) is held:
the free reply is dropped at once and the model is asked to continue from `<tool_call>\\n{"name": "` (Qwen's
own format, compact JSON: fewer tokens than its pretty-printed one), the call is parsed and run, its result
goes back as a tool message and the model's next reply is streamed. Bounded: `llm.tool_rounds` calls per
turn, `llm.tool_timeout_s` per call; a failed call is a spoken apology, not a guess. Built-ins (time,
arithmetic) run here; timers and MCP tools in the tools actor, asked over the bus. A barge-in ends the wait
at once; a call not yet made is never made, and a timer set by a cancelled turn is taken back (`undo`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from actors.llm_prompt import Conversation
from actors.tool_shortcuts import direct_call, worded
from actors.tools_builtin import BUILTIN, ToolError
from bus.messages import Message, ToolCall, ToolCatalogAsk, ToolResult, ToolUsed, Transcript

if TYPE_CHECKING:
    from actors.llm import LlmActor

CALL_OPENERS = ("<tool_call>", "```", "{")
"""How a reply that is a tool call starts."""
CALL_PREFIX = '<tool_call>\n{"name": "'
"""Where the model is asked to go on from once a call is spotted (the chat template's own format)."""
MAX_RESULT_CHARS = 600
TOOL_HINTS = re.compile(
    r"\b(what time|the time|time is it|what day|the date|today|timers?|alarms?|remind me)\b"
    r"|\d[\d,.]*\s*(\+|-|\*|x|\u00d7|/|plus|minus|times|divided by|multiplied by|over)\s*\d", re.IGNORECASE)
"""Questions that name the time, a date, a timer or a sum of numbers. This small model, shown examples of
plain answers, guesses them instead of calling a tool; for these it is asked straight away for the call
(which tool and its arguments are still its choice, unless the question holds the whole call:
actors/tool_shortcuts.py), saving the first tokens of a guess too."""
_ids = itertools.count(1)


def opens_call(text: str) -> bool | None:
    """True: `text` starts a tool call; False: it is speech; None: too early to say."""
    head = text.lstrip()
    if not head:
        return None
    if head.startswith(CALL_OPENERS):
        return True
    return None if any(opener.startswith(head) for opener in CALL_OPENERS) else False


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of the first JSON object in `text`; ToolError when there is none."""
    start = text.find("{")
    if start < 0:
        raise ToolError("the model's tool call had no JSON")
    try:
        call, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        raise ToolError("the model's tool call was not valid JSON") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ToolError("the model's tool call named no tool")
    arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):  # some servers send arguments as a JSON string
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            raise ToolError("the model's tool arguments were not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ToolError("the model's tool arguments were not an object")
    return call["name"], arguments


def apology(reason: str) -> str:
    reason = reason.strip().rstrip(".")
    return f"Sorry, friend, I could not do that: {reason[:160]}."


class ToolBox:
    """The tools the model is offered: the built-ins and the tools actor's catalogue."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.remote: dict[str, dict[str, Any]] = {}
        self.warm = False
        """Whether the prompt head with the current schemas has been evaluated."""

    def update(self, catalogue: list[dict[str, Any]]) -> None:
        remote = {t["function"]["name"]: t for t in catalogue
                  if isinstance(t.get("function"), dict) and t["function"].get("name") not in BUILTIN}
        if remote != self.remote:
            self.remote, self.warm = remote, False

    def schemas(self) -> tuple[dict[str, Any], ...]:
        if not self.enabled:
            return ()
        return (*(spec for spec, _fn in BUILTIN.values()), *self.remote.values())

    def knows(self, name: str) -> bool:
        return name in BUILTIN or name in self.remote

    def start(self, actor: LlmActor) -> None:
        """Offer tools only to a model that can call them (an instruct model through its chat template, or a
        chat server); ask the tools actor for its catalogue, then evaluate the prompt head with it."""
        generator, settings = actor.generator, actor.settings
        chat = getattr(generator, "template", None) is not None or (settings.backend == "openai"
                                                                     and settings.api == "chat")
        self.enabled = settings.tools and chat
        if not self.enabled:
            return
        deadline = time.monotonic() + settings.tools_wait_s
        while (left := deadline - time.monotonic()) > 0:  # asked again: the first ask may leave before the link is up
            actor.publish(ToolCatalogAsk())
            actor.wait_for(lambda _m: False, min(left, 0.5), give_up=lambda: bool(self.remote))
            if self.remote:  # the catalogue came (a control message: LlmActor.on_control took it)
                break
        else:
            actor.log.warning("no_tool_catalogue", waited_s=settings.tools_wait_s,
                              why="no tools actor answered: timers and MCP tools are not offered until it does")
        self.keep_warm(actor)

    def keep_warm(self, actor: LlmActor) -> None:
        """Evaluate the prompt head with the current schemas (after a new catalogue), so a turn prefills
        only its own words."""
        if self.warm or not self.enabled or actor.generator is None:
            return
        self.warm = True
        if not getattr(actor.generator, "takes_reply_prefix", False):
            return  # a server keeps its own prompt cache: no request is spent on it
        try:
            for _piece in actor.generator.stream(Conversation("Hi.", style=actor.settings.style, tools=self.schemas())):
                break
        except Exception as exc:  # only a head start: a server that is down fails the turn, not the actor
            actor.log.warning("warm_up_failed", error=f"{type(exc).__name__}: {exc}")

    def turn(self, actor: LlmActor, msg: Transcript, ready: Iterable[str], stream: Iterator[str]) -> Iterator[str]:
        """What to speak for `msg`: the reply as it comes, with any tool calls in it made on the way."""
        if not self.schemas():
            return itertools.chain(ready, stream)
        return ToolTurn(actor, msg, actor._conversation(msg), ready, stream).pieces()


@dataclasses.dataclass
class Outcome:
    ok: bool
    result: str
    ms: float


class ToolTurn:
    """One turn's answer with tools: `pieces()` yields what is to be spoken, running calls on the way."""

    def __init__(self, actor: LlmActor, msg: Transcript, conversation: Conversation, ready: Iterable[str],
                 stream: Iterator[str]) -> None:
        self.actor, self.msg, self.conversation = actor, msg, conversation
        self.ready, self.stream = ready, stream
        self.settings = actor.settings
        self.asked: list[ToolCall] = []
        self.spoke = False

    def cancelled(self) -> bool:
        return self.actor.is_cancelled(self.msg.session, self.msg.turn) or self.actor.stopping

    def pieces(self) -> Iterator[str]:
        try:
            for piece in self._rounds():
                if not self.spoke:  # a barge-in during the call or the next reply's first token: say nothing
                    self.actor.check_control()
                    if self.cancelled():
                        return
                self.spoke = True
                yield piece
        finally:  # also when the consumer stops at a barge-in
            if self.cancelled() and not self.spoke:
                for ask in self.asked:  # nobody heard the answer: what the calls did is taken back
                    self.actor.publish(dataclasses.replace(ask, undo=True))

    def _rounds(self) -> Iterator[str]:
        stream: Iterator[str] = itertools.chain(self.ready, self.stream)
        conversation, raw = self.conversation, self.stream
        hinted = self.settings.tool_hints and bool(TOOL_HINTS.search(self.msg.text))
        for round_ in range(self.settings.tool_rounds + 1):
            held: list[str] = []
            direct = direct_call(self.msg.text) if round_ == 0 and hinted else None
            verdict: bool | None = True if direct or (round_ == 0 and hinted and self._takes_prefix()) else None
            for piece in () if verdict else stream:
                held.append(piece)
                verdict = opens_call("".join(held))
                if verdict is not None:
                    break
            if not verdict:  # speech (or nothing): out as it comes
                yield from held
                yield from stream
                return
            close = getattr(raw, "close", None)
            if close is not None:
                close()  # the free reply is dropped (and the model's generation ended) before the next
            if direct is not None:
                name, arguments = direct
            else:
                call_text = self._call_text("".join(held), conversation)
                if self.cancelled():
                    return
                try:
                    name, arguments = parse_call(call_text)
                except ToolError as exc:
                    yield apology(str(exc))
                    return
            outcome = self.run(name, arguments)
            if self.cancelled():
                return
            if not outcome.ok:
                yield apology(outcome.result)
                return
            if direct is not None and (answer := worded(self.msg.text, name, arguments, outcome.result)):
                yield answer  # the question held the whole call, and its answer is the result said plainly
                return
            step = (json.dumps({"name": name, "arguments": arguments}), outcome.result[:MAX_RESULT_CHARS])
            conversation = dataclasses.replace(conversation, steps=(*conversation.steps, step))
            assert self.actor.generator is not None
            stream = raw = self.actor.generator.stream(conversation)
        yield apology(f"I needed more than {self.settings.tool_rounds} tool calls")

    def _call_text(self, held: str, conversation: Conversation) -> str:
        """The whole call: the held text when it already parses (an HTTP server's native call), else the
        model's continuation from the call prefix."""
        generator = self.actor.generator
        assert generator is not None
        try:
            parse_call(held)
            return held
        except ToolError:
            if not self._takes_prefix():
                return held
        forced = dataclasses.replace(conversation, reply_prefix=CALL_PREFIX)
        rest = "".join(itertools.takewhile(lambda _p: not self.cancelled(), generator.stream(forced)))
        return '{"name": "' + rest

    def _takes_prefix(self) -> bool:
        return bool(getattr(self.actor.generator, "takes_reply_prefix", False))

    def run(self, name: str, arguments: dict[str, Any]) -> Outcome:
        began = time.perf_counter()
        if not self.actor.tools.knows(name):
            outcome = Outcome(False, f"I have no tool called {name}", 0.0)
        elif name in BUILTIN:
            try:
                outcome = Outcome(True, BUILTIN[name][1](arguments), 0.0)
            except ToolError as exc:
                outcome = Outcome(False, str(exc), 0.0)
        else:
            outcome = self._ask(name, arguments)
        outcome.ms = 1000.0 * (time.perf_counter() - began)
        self.actor.log.info("tool_called", turn=self.msg.turn, tool=name, arguments=arguments, ok=outcome.ok,
                            result=outcome.result[:200], ms=round(outcome.ms, 1))
        self.actor.publish(ToolUsed(session=self.msg.session, turn=self.msg.turn, name=name, arguments=arguments,
                                    result=outcome.result[:MAX_RESULT_CHARS], ok=outcome.ok, ms=outcome.ms))
        return outcome

    def _ask(self, name: str, arguments: dict[str, Any]) -> Outcome:
        """Run a tool of the tools actor: ask over the bus, wait for its answer (or the barge-in)."""
        call_id = next(_ids)
        ask = ToolCall(session=self.msg.session, turn=self.msg.turn, call_id=call_id, name=name,
                       arguments=arguments)
        self.actor.publish(ask)
        self.asked.append(ask)

        def answer(m: Message) -> bool:
            return isinstance(m, ToolResult) and m.call_id == call_id and (m.session, m.turn) == (ask.session,
                                                                                                  ask.turn)

        env = self.actor.wait_for(answer, self.settings.tool_timeout_s, give_up=self.cancelled)
        if self.cancelled():  # `pieces` takes back what the call did
            return Outcome(False, "the turn was cancelled", 0.0)
        if env is None:
            return Outcome(False, f"the {name} tool gave no answer within {self.settings.tool_timeout_s:g} "
                                  "seconds", 0.0)
        assert isinstance(env.msg, ToolResult)
        return Outcome(env.msg.ok, env.msg.result, 0.0)
