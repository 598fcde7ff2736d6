"""Every message that travels on the bus, one frozen dataclass per kind.

Each class is registered under a short wire name (the `@message` decorator) and
carries the envelope fields of `Message`: which satellite (`session`), which
exchange (`turn`) and when it was published (`ts`, wall-clock seconds of the
publishing host). Audio never goes inside a message: classes with
`HAS_PAYLOAD = True` travel with raw PCM bytes as a separate frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

PROTOCOL_VERSION = 1

ButtonSource = Literal["keyboard", "gpio", "script", "typed"]
TranscriptSource = Literal["speech", "typed"]
PlayerState = Literal["started", "finished", "stopped"]
LinkRole = Literal["server", "edge"]
Forget = Literal["all", "last"]
"""The closed sets of values some fields take; the codec refuses any other (bus/codec.py `_matches`)."""

REGISTRY: dict[str, type[Message]] = {}
"""wire name -> message class; filled by the @message decorator."""
TOPICS: dict[type[Message], str] = {}
"""message class -> the kind it travels as on the bus (its topic); filled by the @message decorator."""

M = TypeVar("M", bound="type[Message]")


def message(wire_name: str, topic: str) -> Any:
    """Register a message class under `wire_name` (unique, short, stable), travelling as `topic`: the kind
    subscribers filter on by prefix, so related kinds share a stem (`llm.token`, `llm.done`)."""

    def register(cls: M) -> M:
        if wire_name in REGISTRY:
            raise ValueError(f"wire name {wire_name!r} registered twice")
        cls.WIRE_NAME = wire_name
        REGISTRY[wire_name] = cls
        TOPICS[cls] = topic
        return cls

    return register


def now() -> float:
    """Wall-clock seconds: one clock for every timing mark on a host."""
    return time.time()


@dataclass(frozen=True, kw_only=True)
class Message:
    """Fields every bus message carries."""

    WIRE_NAME: ClassVar[str] = ""
    HAS_PAYLOAD: ClassVar[bool] = False

    session: str = "local"
    """Which satellite (device) the message belongs to."""
    turn: int = 0
    """Which exchange: milliseconds since the epoch at the button press that began it."""
    ts: float = field(default_factory=now)
    """When the publisher created the message (wall-clock seconds)."""


# --- push-to-talk -----------------------------------------------------------------


@message("btn", topic="button")
@dataclass(frozen=True, kw_only=True)
class ButtonEvent(Message):
    """The push-to-talk button went down or up."""

    pressed: bool
    """True on press (a turn begins), False on release (speech is over)."""
    source: ButtonSource = "keyboard"
    """Which kind of button."""


# --- audio in -----------------------------------------------------------------------


@message("frame", topic="audio.in")
@dataclass(frozen=True, kw_only=True)
class AudioFrame(Message):
    """One block of microphone audio; the PCM (int16 mono) is the payload frame."""

    HAS_PAYLOAD: ClassVar[bool] = True
    seq: int
    """Frame number within the turn, from 0."""
    sample_rate: int = 16000
    """Samples per second of the payload."""
    source_end: bool = False
    """True on the last frame a finite source (a WAV file) has to give."""


@message("capend", topic="audio.in.end")
@dataclass(frozen=True, kw_only=True)
class CaptureEnd(Message):
    """The mic stopped capturing for a turn (the button was released)."""

    frames: int
    """How many frames were published for the turn."""
    duration_ms: float
    """Audio captured, in milliseconds."""


@message("vad", topic="vad")
@dataclass(frozen=True, kw_only=True)
class VadEvent(Message):
    """Voice activity changed within the turn's audio."""

    speech: bool
    """True when speech starts, False when it stops."""
    audio_ms: float
    """Position in the turn's audio where the change happened."""


# --- words --------------------------------------------------------------------------


@message("text", topic="stt.final")
@dataclass(frozen=True, kw_only=True)
class Transcript(Message):
    """What the user said (or typed)."""

    text: str
    """The transcript."""
    final: bool = True
    """False for a partial transcript made while the button is held."""
    audio_ms: float = 0.0
    """How much audio the transcript covers."""
    compute_ms: float = 0.0
    """Time the recogniser spent on it."""
    source: TranscriptSource = "speech"
    """Spoken (through STT) or typed."""
    settled: bool = False
    """Partial made after VAD saw speech stop: it covers every word heard so far."""
    reused_partial: bool = False
    """Final that reuses the settled partial because VAD heard nothing after it."""
    language: str = ""
    """The language the recogniser heard (ISO 639-1: en, fr, es); empty when typed or not told."""


@message("tok", topic="llm.token")
@dataclass(frozen=True, kw_only=True)
class LlmToken(Message):
    """A piece of the reply as the LLM produces it."""

    text: str
    """The piece, exactly as generated (may start with a space)."""
    index: int
    """Position of the piece in the reply, from 0."""
    language: str = ""
    """The reply's language when it is not English (ISO 639-1: fr, es), so persona and TTS speak it right."""


@message("llmdone", topic="llm.done")
@dataclass(frozen=True, kw_only=True)
class LlmDone(Message):
    """The LLM finished (or gave up on) the reply."""

    text: str
    """The whole reply."""
    tokens: int
    """Tokens generated."""
    prompt_tokens: int = 0
    """Tokens in the prompt."""
    first_token_ms: float = 0.0
    """From the transcript's arrival to the first token."""
    total_ms: float = 0.0
    """From the transcript's arrival to the last token."""
    cancelled: bool = False
    """True when an interrupt stopped generation early."""
    speculated: bool = False
    """True when the reply was begun before the final transcript, on a settled partial with the same words
    (its tokens were held back until the final confirmed them)."""
    language: str = ""
    """The reply's language when it is not English (as `LlmToken.language`)."""
    conversation_exchanges: int = 0
    """Exchanges the session's conversation memory holds after this reply (a folded summary not counted)."""
    conversation_tokens: int = 0
    """Tokens that memory takes in the next prompt (the summary line included)."""


@message("say", topic="say")
@dataclass(frozen=True, kw_only=True)
class Say(Message):
    """A persona-shaped clause to speak."""

    text: str
    """The clause (may be empty on the closing `last` message)."""
    index: int
    """Position of the clause in the reply, from 0."""
    last: bool = False
    """True on the reply's final clause."""
    language: str = ""
    """The clause's language when it is not English: TTS picks a voice that speaks it (actors/languages.py)."""


# --- audio out ----------------------------------------------------------------------


@message("chunk", topic="audio.out")
@dataclass(frozen=True, kw_only=True)
class AudioChunk(Message):
    """Synthesised speech; the PCM (int16 mono) is the payload frame."""

    HAS_PAYLOAD: ClassVar[bool] = True
    index: int
    """Position of the chunk in the reply's audio, from 0."""
    sample_rate: int
    """Samples per second of the payload."""
    clause: int = 0
    """Which `Say` clause the chunk speaks."""
    last: bool = False
    """True on the reply's final chunk (its payload may be empty)."""


@message("player", topic="player")
@dataclass(frozen=True, kw_only=True)
class PlayerEvent(Message):
    """What the player did with a turn's audio."""

    state: PlayerState
    """started (first audio handed to the device), finished, or stopped (interrupted)."""
    audio_ms: float = 0.0
    """Audio played so far."""
    device: str = ""
    """Which output: a sound device name or a WAV path."""
    clauses_played: int = 0
    """On stopped: how many of the reply's clauses were played to their end (memory keeps those)."""


# --- control ------------------------------------------------------------------------


@message("ping", topic="ctl.ping")
@dataclass(frozen=True, kw_only=True)
class Ping(Message):
    """Asks every actor to answer with `Ready`; also measures the bus."""

    nonce: int = 0
    """Echoed back in the answer."""


@message("ready", topic="ctl.ready")
@dataclass(frozen=True, kw_only=True)
class Ready(Message):
    """An actor is connected, has loaded its models and can work."""

    actor: str
    """The actor's name."""
    pid: int
    """Its process id."""
    backend: str = ""
    """Which backend and model it runs, e.g. 'faster-whisper tiny.en'."""
    nonce: int = 0
    """The `Ping` nonce this answers (0 when announced unasked)."""


@message("interrupt", topic="ctl.interrupt")
@dataclass(frozen=True, kw_only=True)
class Interrupt(Message):
    """Stop everything for this session and turn (barge-in)."""

    reason: str = "barge-in"
    """Why."""


@message("shutdown", topic="ctl.shutdown")
@dataclass(frozen=True, kw_only=True)
class Shutdown(Message):
    """The actors named (or all, when empty) whose process ids are listed stop cleanly."""

    actors: list[str] = field(default_factory=list)
    """Names of the actors to stop; empty means every actor."""
    pids: list[int] = field(default_factory=list)
    """Process ids of the actors to stop: an actor stops only when its own is listed, so a launcher stops its
    own processes and never another set's actors of the same names on a shared bus."""


@message("forget", topic="conversation")
@dataclass(frozen=True, kw_only=True)
class NewConversation(Message):
    """Forget the session's conversation (`say --new`, `talk`'s n key): a peer may send it only for its own
    session (bus/session_guard.py), so no satellite clears another's memory."""

    forget: Forget = "all"
    """all: a new conversation; last: only the last exchange ("forget that")."""


# --- turn bookkeeping ---------------------------------------------------------------


@message("error", topic="turn.error")
@dataclass(frozen=True, kw_only=True)
class TurnError(Message):
    """A stage could not do its part of a turn; the turn ends here."""

    stage: str
    """Which actor gave up."""
    reason: str
    """What went wrong, in words a user can act on."""


@message("record", topic="turn.record")
@dataclass(frozen=True, kw_only=True)
class TurnRecord(Message):
    """The logger's finished record of a turn (the same as its JSONL line)."""

    record: dict[str, Any]
    """Every timing and text of the turn; see actors/timing.py for the fields."""


@message("audible", topic="audio.heard")
@dataclass(frozen=True, kw_only=True)
class Audible(Message):
    """A probe listening to the output device heard the reply's first sound (true first-audible time)."""

    heard_at: float
    """Wall-clock seconds of the first reply sample that reached the sink (onset in the recording)."""
    device: str = ""
    """What was recorded, e.g. relay_sink.monitor."""


@message("down", topic="ctl.down")
@dataclass(frozen=True, kw_only=True)
class ActorDown(Message):
    """The supervisor saw an actor die; turns in flight through it cannot finish."""

    actor: str
    exit_code: int
    restart_in_s: float
    """When the supervisor starts it again."""
    died_at: float = 0.0
    """Wall-clock seconds when the supervisor saw it die: turns begun after that are not its victims."""


@message("beat", topic="ctl.heartbeat")
@dataclass(frozen=True, kw_only=True)
class Heartbeat(Message):
    """'I am here', once a second, from the server (role "server") and from each satellite (role "edge").

    A satellite answers a server beat at once, echoing its `seq` and `ts` (`echo_ts`), and stamps its own
    `ts`: from the four times the server estimates the satellite's clock offset (as NTP does).
    """

    role: LinkRole
    """Which side beats: the server's logger or a satellite's player."""
    host: str = ""
    seq: int = 0
    echo_seq: int = -1
    """The server beat this answers (-1: none)."""
    echo_ts: float = 0.0
    """That beat's `ts`, as the server stamped it."""


# --- tools --------------------------------------------------------------------------


@message("toolcall", topic="tool.call")
@dataclass(frozen=True, kw_only=True)
class ToolCall(Message):
    """The llm asks the tools actor to run one of its tools (a timer, an MCP server's) for a turn."""

    call_id: int
    """Unique per call of the asking llm; the answer carries it back."""
    name: str
    """The tool, as the catalogue names it."""
    arguments: dict[str, Any] = field(default_factory=dict)
    """Its arguments, as the model gave them (checked by the tool)."""
    undo: bool = False
    """Roll back what an earlier call (`call_id`) did: its turn was cancelled after it ran."""


@message("toolask", topic="tool.ask")
@dataclass(frozen=True, kw_only=True)
class ToolCatalogAsk(Message):
    """An llm starting up asks the tools actor for its catalogue (answered with a `ToolCatalog`)."""


@message("toolres", topic="tool.result")
@dataclass(frozen=True, kw_only=True)
class ToolResult(Message):
    """What a tool call gave: its text for the model, or why it failed."""

    call_id: int
    ok: bool
    result: str
    """The result (ok) or the error, in words."""


@message("toolcat", topic="tool.catalog")
@dataclass(frozen=True, kw_only=True)
class ToolCatalog(Message):
    """The tools the tools actor runs, as OpenAI-style function schemas (sent when it starts and when an llm
    announces itself ready)."""

    tools: list[dict[str, Any]] = field(default_factory=list)


@message("toolused", topic="llm.tool")
@dataclass(frozen=True, kw_only=True)
class ToolUsed(Message):
    """A tool ran for a turn (for its record): the llm's calls, and a timer ringing."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    result: str = ""
    ok: bool = True
    ms: float = 0.0
    """How long the call took."""
    by: str = "llm"
    """Who ran it: llm (a call the model made) or timers (a timer rang: a turn nobody asked for)."""


PARTIAL_TRANSCRIPT_TOPIC = "stt.partial"
"""A transcript made while the button is held; its class's topic (`stt.final`) is the final's."""


def topic_for(msg: Message) -> str:
    """The kind a message travels as: its class's topic; a partial transcript is `stt.partial`."""
    if isinstance(msg, Transcript) and not msg.final:
        return PARTIAL_TRANSCRIPT_TOPIC
    return TOPICS[type(msg)]


def kinds_of(cls: type[Message]) -> tuple[str, ...]:
    """Every kind messages of `cls` may travel as (a transcript: final and partial)."""
    return (TOPICS[cls], PARTIAL_TRANSCRIPT_TOPIC) if cls is Transcript else (TOPICS[cls],)
