"""The turn record: every timing of one exchange, built from the messages seen on the bus.

All marks are the `ts` their publisher stamped (one wall clock per host), so
a stage's figure is the gap between two messages, not a guess. The headline
figures are `release_to_first_audio_ms` (what the system adds after speech
ends) and `press_to_first_audio_ms` (what the user lives through).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bus.messages import (
    Audible,
    AudioChunk,
    ButtonEvent,
    CaptureEnd,
    Interrupt,
    LlmDone,
    LlmToken,
    Message,
    PlayerEvent,
    Say,
    ToolUsed,
    Transcript,
    TurnError,
)

TIMING_FIELDS = (
    "capture_ms", "bus_transit_ms_p50", "bus_transit_ms_max", "stt_ms", "stt_compute_ms",
    "llm_first_token_ms", "llm_total_ms", "llm_tokens", "tokens_per_s", "persona_ms",
    "tts_first_chunk_ms", "tts_total_ms", "first_audio_at", "playback_finished_at",
    "release_to_first_audio_ms", "press_to_first_audio_ms",
)
"""Every record has these keys (None where a stage did not happen, e.g. no press in a typed turn)."""
MIN_RATE = 4000
"""The lowest sample rate counted as audio for the player's deadline."""
MAX_TOOLS = 16
"""Tool calls kept in one record (the llm makes at most llm.tool_rounds)."""
PROBE_FIELDS = ("first_audible_at", "release_to_first_audible_ms")
"""Also in every record, but set only when an `audible` probe records the output device."""


def _ms(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    ms = 1000.0 * (later - earlier)
    return round(ms, 2) if math.isfinite(ms) else None  # a NaN/inf ts off the bus is no timing


def _started(turn: int) -> str | None:
    """The press time a turn id encodes; None for ids no calendar holds (they come off the bus)."""
    try:
        return datetime.fromtimestamp(turn / 1000, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None


@dataclass
class TurnTimeline:
    session: str
    turn: int
    press: float | None = None
    release: float | None = None
    capture_ms: float | None = None
    transcript: Transcript | None = None
    first_token: float | None = None
    llm_done: LlmDone | None = None
    first_say: float | None = None
    said: list[str] = field(default_factory=list)
    said_last: bool = False
    first_chunk: float | None = None
    last_chunk: float | None = None
    chunk_last: bool = False
    first_audio: float | None = None
    first_audible: float | None = None
    finished: float | None = None
    interrupt: float | None = None
    silenced: float | None = None
    played_at_stop_ms: float | None = None
    stalled_ms: float | None = None
    error: TurnError | None = None
    tools: list[ToolUsed] = field(default_factory=list)
    transit_ms: list[float] = field(default_factory=list)
    last_activity: float = 0.0
    audio_s: float = 0.0
    """Seconds of reply audio seen (what the player has to play: its progress deadline grows by it)."""

    def observe(self, msg: Message, received_at: float, payload_bytes: int = 0) -> None:
        """Take the marks `msg` carries; the first of each kind counts."""
        if not isinstance(msg, PlayerEvent):  # its ts is when audio started, not when it was sent
            self.transit_ms.append(1000.0 * (received_at - msg.ts))
        self.last_activity = received_at
        if isinstance(msg, ButtonEvent):
            if msg.pressed and self.press is None:
                self.press = msg.ts
            elif not msg.pressed and self.release is None:
                self.release = msg.ts
        elif isinstance(msg, CaptureEnd):
            self.capture_ms = msg.duration_ms
        elif isinstance(msg, Transcript) and msg.final and self.transcript is None:
            self.transcript = msg
        elif isinstance(msg, LlmToken) and self.first_token is None:
            self.first_token = msg.ts
        elif isinstance(msg, LlmDone):
            self.llm_done = msg
        elif isinstance(msg, Say):
            self.first_say = self.first_say or msg.ts
            if msg.text:
                self.said.append(msg.text)
            self.said_last = self.said_last or msg.last
        elif isinstance(msg, AudioChunk):
            self.first_chunk = self.first_chunk or msg.ts
            self.last_chunk = msg.ts
            self.chunk_last = self.chunk_last or msg.last
            if msg.sample_rate >= MIN_RATE:  # a rate off the bus of 0 or 1 must not make hours of audio
                self.audio_s += payload_bytes / 2 / msg.sample_rate
        elif isinstance(msg, PlayerEvent):
            if msg.state == "started" and self.first_audio is None:
                self.first_audio = msg.ts
            elif msg.state == "finished":
                self.finished, self.stalled_ms = msg.ts, msg.stalled_ms
            elif msg.state == "stopped":
                self.silenced, self.stalled_ms = msg.ts, msg.stalled_ms
                self.played_at_stop_ms = msg.audio_ms
        elif isinstance(msg, Audible) and self.first_audible is None:
            self.first_audible = msg.heard_at
        elif isinstance(msg, Interrupt):
            self.interrupt = self.interrupt or msg.ts
        elif isinstance(msg, TurnError) and self.error is None:
            self.error = msg
        elif isinstance(msg, ToolUsed) and len(self.tools) < MAX_TOOLS:
            self.tools.append(msg)

    def waits_on(self, actor: str) -> bool:
        """Whether this open turn still needs `actor` (a crash of it means the turn cannot finish): its
        row's `waited_on` in actors/table.py; replicas are named stt-2, llm-2, ..."""
        from actors.table import PROXY, spec_of  # the table names this class's fields in its rows

        if actor == PROXY:
            return True  # anything in flight may have been lost with it
        spec = spec_of(actor)
        return bool(spec and spec.waited_on and spec.waited_on(self))

    @property
    def unasked(self) -> bool:
        """A turn the server began itself: a timer ringing."""
        return any(u.by == "timers" for u in self.tools)

    @property
    def complete(self) -> bool:
        return self.finished is not None or self.error is not None or self.silenced is not None

    def record(self, backends: dict[str, str], timed_out: bool = False) -> dict[str, Any]:
        """The JSONL record of the turn."""
        t = self.transcript
        done = self.llm_done
        # A typed turn has no release: its words arrive with the transcript.
        spoken_end = self.release if self.release is not None else (t.ts if t else None)
        gen_s = (done.ts - self.first_token) if done and self.first_token else 0.0
        status = ("error" if self.error else "interrupted" if self.interrupt or self.silenced
                  else "timeout" if timed_out else "ok")
        rec: dict[str, Any] = {
            "session": self.session,
            "turn": self.turn,
            "started": _started(self.turn),
            "status": status,
            "source": t.source if t else ("speech" if self.press else "timer" if self.unasked else "unknown"),
            "text_in": t.text if t else "",
            "language": t.language if t else "",
            "text_out": done.text if done else "",
            "spoken_text": " ".join(self.said),
            "press_at": self.press,
            "release_at": self.release,
            "capture_ms": self.capture_ms,
            "bus_transit_ms_p50": round(statistics.median(self.transit_ms), 3) if self.transit_ms else None,
            "bus_transit_ms_max": round(max(self.transit_ms), 3) if self.transit_ms else None,
            "stt_ms": _ms(t.ts, self.release) if t and self.release else None,
            "stt_compute_ms": round(t.compute_ms, 2) if t and t.source == "speech" else None,
            "stt_reused_partial": t.reused_partial if t and t.source == "speech" else None,
            "llm_first_token_ms": _ms(self.first_token, t.ts if t else None),
            "llm_total_ms": _ms(done.ts if done else None, t.ts if t else None),
            "llm_tokens": done.tokens if done else None,
            "llm_prompt_tokens": done.prompt_tokens if done else None,
            "llm_speculated": done.speculated if done else None,
            "conversation_exchanges": done.conversation_exchanges if done else None,
            "conversation_tokens": done.conversation_tokens if done else None,
            "tokens_per_s": round((done.tokens - 1) / gen_s, 1) if done and gen_s > 0 and done.tokens > 1 else None,
            "persona_ms": _ms(self.first_say, self.first_token),
            "tts_first_chunk_ms": _ms(self.first_chunk, self.first_say),
            "tts_total_ms": _ms(self.last_chunk, self.first_say),
            "first_audio_at": self.first_audio,
            "playback_finished_at": self.finished,
            "playback_ms": _ms(self.finished, self.first_audio),
            "playback_stalled_ms": self.stalled_ms,
            "release_to_first_audio_ms": _ms(self.first_audio, spoken_end),
            "press_to_first_audio_ms": _ms(self.first_audio, self.press),
            # Only with a probe recording the output device (tests/CI on PulseAudio): the sound, not the request.
            "first_audible_at": self.first_audible,
            "release_to_first_audible_ms": _ms(self.first_audible, spoken_end),
            "interrupt_to_silence_ms": _ms(self.silenced, self.interrupt),
            "played_at_stop_ms": self.played_at_stop_ms,
            "error": {"stage": self.error.stage, "reason": self.error.reason} if self.error else None,
            "tools": [{"name": u.name, "args": u.arguments, "result": u.result, "ok": u.ok, "ms": round(u.ms, 1),
                       "by": u.by} for u in self.tools],
            "tool_ms": round(sum(u.ms for u in self.tools), 1) if self.tools else None,
            "backends": dict(backends),
        }
        return rec
