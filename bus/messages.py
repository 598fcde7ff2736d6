"""Every message that travels on the bus, one frozen dataclass per kind.

Each class is registered under a short wire name (the `@message` decorator) and
carries the envelope fields of `Message`: which satellite (`session`), which
exchange (`turn`) and when it was published (`ts`, wall-clock seconds of the
publishing host). Audio never goes inside a message: classes with
`HAS_PAYLOAD = True` travel with raw PCM bytes as a separate frame.

Here: the messages of a turn's pipeline. The base class and the `@message` registry are in
bus/message_base.py, the control messages (ctl.*) in bus/messages_control.py, the tool messages in
bus/messages_tools.py; every one of them is importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bus.message_base import (
    PROTOCOL_VERSION,
    REGISTRY,
    TOPICS,
    ButtonSource,
    Forget,
    LinkRole,
    Message,
    PlayerState,
    TranscriptSource,
    message,
    now,
)
from bus.messages_control import ActorDown, Heartbeat, Interrupt, Ping, Ready, Shutdown
from bus.messages_tools import ToolCall, ToolCatalog, ToolCatalogAsk, ToolResult, ToolUsed

__all__ = [  # the names this module re-exports, so that every message and the base are importable from here
    "PROTOCOL_VERSION",
    "REGISTRY",
    "TOPICS",
    "ActorDown",
    "ButtonSource",
    "Forget",
    "Heartbeat",
    "Interrupt",
    "LinkRole",
    "Message",
    "Ping",
    "PlayerState",
    "Ready",
    "Shutdown",
    "ToolCall",
    "ToolCatalog",
    "ToolCatalogAsk",
    "ToolResult",
    "ToolUsed",
    "TranscriptSource",
    "message",
    "now",
]


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
    stalled_ms: float = 0.0
    """On finished or stopped: silence inside the reply, as a device playing in real time from the first
    sample has it: a clause that came after the ones before had all been played (a reply too slow to keep up
    with its own speech)."""


# --- conversation -------------------------------------------------------------------


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
