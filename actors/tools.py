"""The tools actor: owns the timers and the MCP servers, runs the llm's calls to them, rings timers.

Subscribes to `tool.call` and `tool.ask`; publishes `tool.result` for each call and its `ctl.tools` catalogue (the
schemas it runs: the timer tools and every allowed MCP tool) when asked, when it changes and whenever an llm
announces itself ready. Timers live in a private JSON file (actors/timers.py), so one set before a
restart of this actor, or of the llm, still rings. When one rings, this actor starts a turn nobody asked
for on the session that set it: a `ToolUsed` (the logger opens the turn's record on it) and a `Say` with a
fresh turn id, which TTS speaks and that session's player plays, so its LEDs and pages show it as speech.
MCP calls run on the hub's event loop; their results go out from `on_idle` as they finish.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from actors.base import Actor, on
from actors.llm_memory import state_path
from actors.mcp_client import McpHub, parse_specs
from actors.timers import TimerStore, seconds_until, spoken_duration
from actors.tools_builtin import ToolError, schema
from bus.codec import Envelope
from bus.messages import Ready, Say, ToolCall, ToolCatalog, ToolCatalogAsk, ToolResult, ToolUsed
from bus.push_to_talk import new_turn_id


@dataclass
class ToolsSettings:
    timers_path: str = "logs/timers.json"
    """Where timers are kept across restarts (a private 0600 file; a relative path is under
    $ROCKY_RELAY_STATE_DIR when that is set, as the conversation memory is)."""
    call_timeout_s: float = 5.0
    """Longest an MCP tool may take to answer one call; past it the call fails (the turn apologises)."""
    start_timeout_s: float = 10.0
    """Longest an MCP server may take to start and list its tools before it counts as failed."""
    mcp: list[dict[str, Any]] = field(default_factory=list)
    """MCP servers, one `[[tools.mcp]]` table each: name, command = ["prog", "arg"] (stdio, started and
    supervised here: restarted when they die) or url = "http://host:port/mcp" (streamable HTTP, connected to),
    allow = the tool names offered to the model (["*"]: all), env = extra environment."""


TIMER_TOOLS: dict[str, dict[str, Any]] = {
    "set_timer": schema("set_timer", "Start a timer (after some seconds) or an alarm (at a clock time).",
                        seconds=("integer", "how long"), at=("string", "or a time, HH:MM"),
                        label=("string", "what it is for")),
    "cancel_timer": schema("cancel_timer", "Cancel timers, all or those with a label.",
                           label=("string", "empty for all")),
    "timer_left": schema("timer_left", "How long each timer has left."),
}
for _spec in TIMER_TOOLS.values():  # only a timer's length (or its time) is needed
    _spec["function"]["parameters"]["required"] = []


class ToolsActor(Actor):
    name: ClassVar[str] = "tools"
    poll_ms = 100.0  # the timers' resolution, and how soon a finished MCP call is answered
    delivered_when_cancelled = (ToolCall,)  # an undo comes for a cancelled turn; other calls of one are refused

    def __init__(self, settings: ToolsSettings) -> None:
        super().__init__()
        self.settings = settings
        self.specs = parse_specs(settings.mcp)  # a bad [[tools.mcp]] fails the start, naming the entry
        self.store: TimerStore | None = None
        self.hub = McpHub(self.specs, settings.start_timeout_s)
        self.in_flight: dict[int, tuple[ToolCall, concurrent.futures.Future[str], float]] = {}
        self.sent_catalogue: list[str] | None = None
        self.undone: dict[int, int] = {}
        """call id -> the timer it set, so a cancelled turn's timer can be taken back."""

    def on_start(self) -> None:
        self.store = TimerStore(state_path(self.settings.timers_path) or "timers.json")
        if self.store.problem:
            self.log.warning("timers_file_set_aside", reason=self.store.problem)
        self.hub.start()
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline and any(s.starts == 0 or (not s.tools and not s.problem)
                                                  for s in self.hub.servers):
            time.sleep(0.05)  # only at start: the servers list their tools before the first catalogue

    def backend(self) -> str:
        servers = ", ".join(f"{s.name} {s.url or s.command[0]}" for s in self.specs)
        return f"timers {self.settings.timers_path}" + (f"; mcp {servers}" if servers else "")

    def on_stop(self) -> None:
        self.hub.stop()

    # --- the catalogue ------------------------------------------------------------------
    def catalogue(self) -> list[dict[str, Any]]:
        mcp = [schema for name, (_server, schema) in self.hub.catalogue().items() if name not in TIMER_TOOLS]
        return [*TIMER_TOOLS.values(), *mcp]

    def _offer(self, force: bool = False) -> None:
        tools = self.catalogue()
        names = [t["function"]["name"] for t in tools]
        if force or names != self.sent_catalogue:
            self.sent_catalogue = names
            self.publish(ToolCatalog(tools=tools))

    def on_control(self, env: Envelope) -> None:
        if isinstance(env.msg, Ready) and env.msg.actor.split("-")[0] == "llm":
            self._offer(force=True)

    @on(ToolCatalogAsk)
    def _asked(self, _msg: ToolCatalogAsk, _payload: bytes) -> None:
        self._offer(force=True)

    # --- calls ----------------------------------------------------------------------------
    @on(ToolCall)
    def _call(self, msg: ToolCall, _payload: bytes) -> None:
        assert self.store is not None
        if msg.undo:
            timer_id = self.undone.pop(msg.call_id, None)
            if timer_id is not None and self.store.remove(timer_id):
                self.log.info("timer_taken_back", call_id=msg.call_id, timer=timer_id)
            return
        if self.is_cancelled(msg.session, msg.turn):  # nobody hears what it would do: it is not done
            self._answer(msg, False, "the turn was cancelled")
            return
        if msg.name in TIMER_TOOLS:
            try:
                result = self._timer_tool(msg)
            except ToolError as exc:
                self._answer(msg, False, str(exc))
            else:
                self._answer(msg, True, result)
            return
        self.in_flight[msg.call_id] = (msg, self.hub.call(msg.name, msg.arguments, self.settings.call_timeout_s),
                                       time.monotonic())

    def _timer_tool(self, msg: ToolCall) -> str:
        assert self.store is not None
        args = msg.arguments
        if msg.name == "set_timer":
            seconds = seconds_until(args["at"]) if args.get("at") else args.get("seconds")
            timer = self.store.add(msg.session, seconds, args.get("label", ""), msg.turn)
            self.undone[msg.call_id] = timer.id
            while len(self.undone) > 64:
                self.undone.pop(next(iter(self.undone)))
            return f"{timer.label} timer set for {spoken_duration(timer.seconds)}"
        if msg.name == "cancel_timer":
            gone = self.store.cancel(msg.session, args.get("label", ""))
            return f"cancelled {len(gone)} timer{'' if len(gone) == 1 else 's'}" if gone else "there was no timer"
        timers = self.store.of_session(msg.session)
        if not timers:
            return "there is no timer running"
        return "; ".join(f"{t.label}: {spoken_duration(self.store.left(t))} left" for t in timers)

    def _answer(self, msg: ToolCall, ok: bool, result: str) -> None:
        self.publish(ToolResult(session=msg.session, turn=msg.turn, call_id=msg.call_id, ok=ok, result=result))

    def on_idle(self) -> None:
        self._deliver()
        self._ring()
        self._offer()

    def handle(self, env: Envelope) -> None:
        super().handle(env)
        self._deliver()
        self._ring()  # a stream of calls must not hold a timer back

    def _deliver(self) -> None:
        for call_id, (msg, future, _began) in list(self.in_flight.items()):
            if not future.done():
                continue
            del self.in_flight[call_id]
            try:
                self._answer(msg, True, future.result())
            except Exception as exc:  # ToolError or whatever the SDK raised: the turn apologises
                self._answer(msg, False, str(exc) or type(exc).__name__)

    # --- ringing ---------------------------------------------------------------------------
    def _ring(self) -> None:
        assert self.store is not None
        for timer in self.store.due():
            turn = new_turn_id()
            late = time.time() - timer.due
            self.log.info("timer_rang", session=timer.session, label=timer.label, turn=turn, late_s=round(late, 2))
            self.publish(ToolUsed(session=timer.session, turn=turn, name="timer", by="timers", ms=0.0,
                                  arguments={"label": timer.label, "seconds": timer.seconds,
                                             "set_in_turn": timer.set_in_turn}, result="rang"))
            what = "Your timer" if "timer" in timer.label.lower() else f"Your {timer.label} timer"
            self.publish(Say(session=timer.session, turn=turn, index=0, last=True,
                             text=f"Ding ding! {what} is done."))
