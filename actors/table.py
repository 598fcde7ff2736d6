"""Every actor of Rocky Relay, one row each: read this file to see the whole system.

A row says what the actor is (its class and settings), what it listens to and says on the bus, where it
runs (on the server, or on a satellite's "edge" beside the microphone and speaker), whether the server
may run several of it, which default actor sets include it, and what an open turn still needs it for.
Everything else that lists actors is derived from `ACTORS`: the config's sections and default sets and
replica check (launch/config.py), the process builder (launch/actor_main.py), the logger's "which stage
was this turn waiting on" (actors/timing.py) and the fuzz suite's coverage check (tests/test_fuzz.py).

Adding an actor is one row here and its class: see "How to add an actor" in the README.
The classes are named by import path and loaded only when built, so a satellite never imports the LLM.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from actors.audible import AudibleSettings
from actors.llm_settings import LlmSettings
from actors.logger_settings import LoggerSettings
from actors.mic import MicSettings
from actors.persona import PersonaSettings
from actors.player import PlayerSettings
from actors.stt import SttSettings
from actors.tools import ToolsSettings
from actors.tts import TtsSettings
from actors.vad import VadSettings
from actors.web_settings import SESSION_PREFIX as WEB_SESSION
from actors.web_settings import WebSettings
from actors.wyoming_settings import SESSION_PREFIX as WYOMING_SESSION
from actors.wyoming_settings import WyomingSettings
from bus.messages import (
    Audible,
    AudioChunk,
    AudioFrame,
    ButtonEvent,
    CaptureEnd,
    Interrupt,
    LlmDone,
    LlmToken,
    Message,
    NewConversation,
    PlayerEvent,
    Say,
    ToolCall,
    ToolCatalog,
    ToolCatalogAsk,
    ToolResult,
    ToolUsed,
    Transcript,
    TurnError,
    TurnRecord,
    VadEvent,
)
from pi.button import GpioButtonSettings
from pi.leds import LedSettings

if TYPE_CHECKING:
    from actors.base import Actor
    from actors.timing import TurnTimeline

Place = Literal["server", "edge"]


@dataclass(frozen=True)
class ActorSpec:
    name: str
    """Process name, config section and `Ready` name; replicas are NAME-1, NAME-2, ..."""
    actor: str
    """"module:Class" of the actor, imported when it is built."""
    settings: type
    """The dataclass of its `[name]` config section."""
    handles: tuple[type[Message], ...]
    """Messages it acts on (its class's `topics` subscribe to them; tests/test_table.py checks)."""
    publishes: tuple[type[Message], ...]
    """Messages it sends besides the ones every actor sends (Ready, TurnError, heartbeats)."""
    runs_on: Place
    """"edge": on a satellite, where `[satellite] session` limits it to that session's turns."""
    replicable: bool = False
    """`[server] replicas` may run several; each session's turns go to one of them."""
    sets: tuple[str, ...] = ()
    """Default actor sets it belongs to (each set also starts the bus proxy unless it is "pi")."""
    waited_on: Callable[[TurnTimeline], bool] | None = None
    """Whether an open turn still needs it: a crash of it then means the turn cannot finish."""
    watches_link: bool = False
    """Its link watch takes `[satellite] link_timeout_s`: it notices when the other side goes quiet."""

    def actor_class(self) -> Callable[[Any], Actor]:
        """The class, imported now; it takes the settings."""
        module, _, cls = self.actor.partition(":")
        loaded: Callable[[Any], Actor] = getattr(importlib.import_module(module), cls)
        return loaded


def _spoken(t: TurnTimeline) -> bool:
    return t.press is not None


ACTORS: tuple[ActorSpec, ...] = (
    # First: it records every turn, so it starts before the actors whose news it records.
    ActorSpec("logger", "actors.logger:LoggerActor", LoggerSettings, (ButtonEvent, CaptureEnd, Transcript,
              LlmToken, LlmDone, ToolUsed, Say, AudioChunk, PlayerEvent, TurnError, TurnRecord, Audible), (TurnRecord,),
              "server", sets=("local", "server", "typed", "wyoming"), watches_link=True),
    ActorSpec("mic", "actors.mic:MicActor", MicSettings, (ButtonEvent,), (AudioFrame, CaptureEnd), "edge",
              sets=("local", "pi"), waited_on=lambda t: _spoken(t) and t.capture_ms is None),
    ActorSpec("vad", "actors.vad:VadActor", VadSettings, (AudioFrame, CaptureEnd), (VadEvent,), "server",
              replicable=True, sets=("local", "server", "wyoming")),
    ActorSpec("stt", "actors.stt:SttActor", SttSettings, (AudioFrame, VadEvent, CaptureEnd), (Transcript,),
              "server", replicable=True, sets=("local", "server", "wyoming"),
              waited_on=lambda t: _spoken(t) and t.transcript is None),
    # Before the llm, so its catalogue is there when the llm asks; it owns the timers, so one rings even
    # while the llm restarts.
    ActorSpec("tools", "actors.tools:ToolsActor", ToolsSettings, (ToolCall, ToolCatalogAsk),
              (ToolResult, ToolCatalog, ToolUsed, Say), "server", sets=("local", "server", "typed", "wyoming")),
    ActorSpec("llm", "actors.llm:LlmActor", LlmSettings, (Transcript, VadEvent, Say, PlayerEvent, NewConversation,
              ToolResult), (LlmToken, LlmDone, ToolCall, ToolCatalogAsk, ToolUsed), "server",
              replicable=True, sets=("local", "server", "typed", "wyoming"),
              waited_on=lambda t: t.llm_done is None and not t.unasked),  # a ringing timer needs no llm
    ActorSpec("persona", "actors.persona:PersonaActor", PersonaSettings, (LlmToken, LlmDone), (Say,), "server",
              replicable=True, sets=("local", "server", "typed", "wyoming"), waited_on=lambda t: not t.said_last),
    ActorSpec("tts", "actors.tts:TtsActor", TtsSettings, (Say,), (AudioChunk,), "server", replicable=True,
              sets=("local", "server", "typed", "wyoming"), waited_on=lambda t: not t.chunk_last),
    ActorSpec("player", "actors.player:PlayerActor", PlayerSettings, (AudioChunk, TurnError, ButtonEvent,
              Transcript), (PlayerEvent,), "edge", sets=("local", "pi", "typed"),
              waited_on=lambda t: t.finished is None and t.silenced is None, watches_link=True),
    ActorSpec("button", "pi.button:GpioButtonActor", GpioButtonSettings, (TurnError, TurnRecord, PlayerEvent),
              (ButtonEvent,), "edge", sets=("pi",)),
    ActorSpec("leds", "pi.leds:LedActor", LedSettings, (ButtonEvent, Transcript, LlmDone, PlayerEvent,
              TurnError, TurnRecord, ToolUsed), (), "edge", sets=("pi",), watches_link=True),
    # An opt-in probe of the output device (tests, CI): in no default set.
    ActorSpec("audible", "actors.audible:AudibleActor", AudibleSettings, (PlayerEvent,), (Audible,), "edge"),
    # Home Assistant's door (Wyoming over TCP): its own "wyoming" set, since it opens a LAN port.
    ActorSpec("wyoming", "actors.wyoming_actor:WyomingActor", WyomingSettings, (Transcript, Say, AudioChunk, LlmDone,
              TurnError), (ButtonEvent, AudioFrame, CaptureEnd, Transcript, Say, PlayerEvent, Interrupt), "server",
              sets=("wyoming",), waited_on=lambda t: t.session.startswith(WYOMING_SESSION) and t.finished is None
              and t.silenced is None),
    # The browser's door: a page and a WebSocket, each tab a session; opt-in (`rocky-relay web`), it opens a port.
    ActorSpec("web", "actors.web_gateway:WebGatewayActor", WebSettings, (Transcript, Say, AudioChunk, TurnError,
              TurnRecord, ToolUsed), (ButtonEvent, AudioFrame, CaptureEnd, PlayerEvent, Interrupt), "server",
              waited_on=lambda t: t.session.startswith(WEB_SESSION) and t.finished is None and t.silenced is None,
              watches_link=True),
)
"""Every actor, in the order sets start them and the config lists their sections."""

PROXY = "proxy"
"""Not an actor: the bus proxy, which a set names to run the bus itself (always started first)."""
SET_NAMES = ("local", "server", "pi", "typed", "wyoming")
BY_NAME: dict[str, ActorSpec] = {}
EDGE: tuple[str, ...] = ()
REPLICABLE: tuple[str, ...] = ()


def register(spec: ActorSpec) -> None:
    """Add a row from outside this file (a plugin, a test's toy actor): before launch.config is imported,
    which reads the table once."""
    global ACTORS
    if spec.name in BY_NAME or spec.name == PROXY or "-" in spec.name:
        raise ValueError(f"actor name {spec.name!r} is taken or has a '-' (kept for replicas)")
    ACTORS = (*ACTORS, spec)
    _derive()


def _derive() -> None:
    global EDGE, REPLICABLE
    BY_NAME.clear()
    BY_NAME.update((spec.name, spec) for spec in ACTORS)
    EDGE = tuple(spec.name for spec in ACTORS if spec.runs_on == "edge")
    REPLICABLE = tuple(spec.name for spec in ACTORS if spec.replicable)


_derive()


def spec_of(process: str) -> ActorSpec | None:
    """The row of a process name (a replica "llm-2" is the llm's); None for the proxy or a stranger."""
    return BY_NAME.get(process.split("-")[0])


def default_sets() -> dict[str, list[str]]:
    """Each default set's processes: the proxy first where the set runs the bus, then its actors."""
    return {name: ([] if name == "pi" else [PROXY]) + [spec.name for spec in ACTORS if name in spec.sets]
            for name in SET_NAMES}
