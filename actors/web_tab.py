"""One browser tab as a satellite of its own: its session's button, microphone and player on the bus.

The page speaks JSON text frames and raw audio frames (16 kHz mono int16, little-endian) over one WebSocket
(see actors/web_page/app.js). A `Tab` turns them into what a satellite publishes (`ButtonEvent`,
`AudioFrame`/`CaptureEnd`, `PlayerEvent`, `Interrupt`, heartbeat answers) and hands the page only its own
session's news (transcripts, spoken clauses, reply audio, errors, the turn record). It publishes for its own
session only, whatever the page sends: there is no field a page could set to act for another session.
A timer of its session ringing (actors/tools.py: a turn nobody pressed for) becomes the turn the tab plays.

The page is the player, so the record's first-audio time is the page's: it reports how long ago its first
reply sample started playing (`ago_ms`, measured on its own clock) and the gateway subtracts that and half the
shortest recent round trip from the moment the report arrived, never earlier than the first chunk left here.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from actors.web_settings import AUDIO_PER_S, TEXT_PER_S, Budget, WebSettings
from bus.codec import Envelope
from bus.messages import (
    AudioChunk,
    AudioFrame,
    ButtonEvent,
    CaptureEnd,
    Heartbeat,
    Interrupt,
    Message,
    PlayerEvent,
    Say,
    ToolUsed,
    Transcript,
    TurnError,
    TurnRecord,
    now,
)
from bus.push_to_talk import new_turn_id
from bus.sockets import DropLog

RATE = 16000
FRAME_BYTES = RATE // 50 * 2
"""20 ms of 16 kHz int16: what the mic actor publishes and webrtcvad needs."""
MAX_AUDIO_MESSAGE = 32000
"""One second of audio in one WebSocket message is plenty; a page sends ~40 ms at a time."""
MAX_AGO_MS = 10_000.0
REALTIME_SLACK_S = 1.0
"""A page may send its audio at most this far ahead of real time (what it buffered before the press)."""
RECORD_FIELDS = ("status", "text_in", "spoken_text", "release_to_first_audio_ms", "press_to_first_audio_ms",
                 "capture_ms", "stt_ms", "llm_first_token_ms", "persona_ms", "tts_first_chunk_ms",
                 "interrupt_to_silence_ms", "stt_reused_partial", "llm_speculated", "error")
"""What of its turn record a page is shown."""
DEVICE = "browser"


class Publisher(Protocol):
    def publish(self, msg: Message, payload: bytes = b"") -> None: ...


ToPage = Callable[[str | bytes], None]


class PageError(ValueError):
    """A frame from the page that cannot be used; the reason is logged and the frame dropped."""


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PageError(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


class Tab:
    def __init__(self, session: str, bus: Publisher, to_page: ToPage, settings: WebSettings, peer: str = "") -> None:
        self.session = session
        self.bus = bus
        self.to_page = to_page
        self.settings = settings
        self.host = f"browser {peer}".strip()
        self.drops = DropLog(f"web {session}")
        self.text_budget, self.audio_budget = Budget(TEXT_PER_S), Budget(AUDIO_PER_S)
        self.turn = 0
        self.turn_open = False
        """From a press until its record or error: a press now interrupts it."""
        self.holding = False
        self.held_at = 0.0
        self.seq = 0
        self.captured_bytes = 0
        self.pending = bytearray()
        self.cancelled: deque[int] = deque(maxlen=64)
        self.clause_ends: list[float] = []
        self.sent_ms = 0.0
        self.last_chunk_seen = False
        self.first_chunk_at: float | None = None
        self.started_sent = False
        self.round_trips: deque[float] = deque(maxlen=8)
        self.beats_sent: dict[int, float] = {}
        self.beat_seq = 0

    # --- the page ---------------------------------------------------------------------
    def from_page_text(self, text: str) -> None:
        try:
            if not self.text_budget.take():
                raise PageError(f"more than {TEXT_PER_S:g} text frames a second")
            data = json.loads(text)
            if not isinstance(data, dict):
                raise PageError("a text frame must be a JSON object")
            kind = data.get("type")
            handler = {"press": self._press, "release": self._release, "started": self._started,
                       "finished": self._finished, "beat": self._beat_answer}.get(kind if isinstance(kind, str) else "")
            if handler is None:
                raise PageError(f"unknown type {str(kind)[:40]!r}")
            handler(data)
        except (PageError, json.JSONDecodeError, RecursionError) as exc:
            self.drops.dropped(str(exc)[:200], "page.text", 1)

    def from_page_audio(self, data: bytes) -> None:
        try:
            if not self.audio_budget.take():
                raise PageError(f"more than {AUDIO_PER_S:g} audio frames a second")
            self._audio(data)
        except PageError as exc:
            self.drops.dropped(str(exc), "page.audio", 1)

    def _stamp(self, data: dict[str, Any]) -> float:
        """When the page says the event happened, on this host's clock."""
        ago_s = _number(data, "ago_ms", 0, MAX_AGO_MS) / 1000
        one_way = min(self.round_trips) / 2 if self.round_trips else 0.0
        return now() - ago_s - one_way

    def _press(self, data: dict[str, Any]) -> None:
        at = self._stamp(data)
        played_ms = _number(data, "played_ms", 0, 3_600_000)
        if self.holding:
            self._end_capture(at)
        if self.turn_open:  # barge-in: the page went silent at the press; say so, as the player does
            self._interrupt(at, played_ms, "barge-in")
        self._take_turn(new_turn_id(self.turn))
        self.holding, self.held_at = True, now()
        self.seq, self.captured_bytes, self.pending = 0, 0, bytearray()
        self.bus.publish(ButtonEvent(session=self.session, turn=self.turn, pressed=True, source="keyboard", ts=at))
        self._send({"type": "turn", "turn": self.turn})

    def _take_turn(self, turn: int) -> None:
        """`turn` becomes the one this tab captures for (a press) or plays (a press, or a timer ringing)."""
        self.turn, self.turn_open = turn, True
        self.clause_ends, self.sent_ms, self.last_chunk_seen = [], 0.0, False
        self.first_chunk_at, self.started_sent = None, False

    def _ring(self, msg: ToolUsed) -> None:
        """A timer of this session rang: the tab plays its turn. As the player lets a new turn's audio cut off
        the one playing, the ring supersedes what the tab had under way, ended as a barge-in ends it (its record
        closes now; its reply is not played after the ring). Only a held button keeps its turn, the user being
        mid-sentence: the ring is the one stopped (nothing played, recorded interrupted); the page shows it."""
        label = str(msg.arguments.get("label", ""))
        if self.holding:
            self._stop(msg.turn, now(), 0.0, "timer rang while the button was held", [])
            self._send({"type": "ring", "turn": msg.turn, "label": label, "missed": True})
            return
        if self.turn_open:
            self._interrupt(now(), self.sent_ms, "superseded by a timer ringing")
        self._take_turn(msg.turn)
        self._send({"type": "ring", "turn": msg.turn, "label": label, "missed": False})

    def _release(self, data: dict[str, Any]) -> None:
        if not self.holding:
            raise PageError("release without a press")
        self._end_capture(self._stamp(data))

    def _end_capture(self, at: float) -> None:
        self.holding = False
        if self.pending:  # the last partial frame, padded: VAD and STT take whole 20 ms frames
            self._frame(bytes(self.pending) + bytes(FRAME_BYTES - len(self.pending)))
            self.pending = bytearray()
        self.bus.publish(ButtonEvent(session=self.session, turn=self.turn, pressed=False, source="keyboard", ts=at))
        self.bus.publish(CaptureEnd(session=self.session, turn=self.turn, frames=self.seq,
                                    duration_ms=self.seq * 20.0))

    def _audio(self, data: bytes) -> None:
        if not self.holding:
            raise PageError("audio while the button is up")
        if len(data) % 2 or not data or len(data) > MAX_AUDIO_MESSAGE:
            raise PageError(f"audio message of {len(data)} bytes (want an even count up to {MAX_AUDIO_MESSAGE})")
        allowed = (now() - self.held_at + REALTIME_SLACK_S) * RATE * 2
        if self.captured_bytes + len(data) > allowed:
            raise PageError("audio faster than real time")
        self.captured_bytes += len(data)
        self.pending += data
        while len(self.pending) >= FRAME_BYTES:
            self._frame(bytes(self.pending[:FRAME_BYTES]))
            del self.pending[:FRAME_BYTES]

    def _frame(self, pcm: bytes) -> None:
        self.bus.publish(AudioFrame(session=self.session, turn=self.turn, seq=self.seq, sample_rate=RATE), pcm)
        self.seq += 1

    def _reported_turn(self, data: dict[str, Any]) -> bool:
        """Whether a playback report is about the turn whose audio this tab is playing."""
        return data.get("turn") == self.turn and self.first_chunk_at is not None and self.turn not in self.cancelled

    def _started(self, data: dict[str, Any]) -> None:
        at = self._stamp(data)
        if not self._reported_turn(data) or self.started_sent:
            raise PageError("playback start of a turn with no audio sent, or reported twice")
        assert self.first_chunk_at is not None
        self.started_sent = True
        self.bus.publish(PlayerEvent(session=self.session, turn=self.turn, state="started",
                                     ts=max(at, self.first_chunk_at), device=DEVICE))

    def _finished(self, data: dict[str, Any]) -> None:
        at = self._stamp(data)
        played = _number(data, "played_ms", 0, 3_600_000)
        if not self._reported_turn(data) or not self.started_sent or not self.last_chunk_seen:
            raise PageError("playback end of a turn that is not playing, or before its last chunk")
        self.first_chunk_at = None  # reported once
        self.turn_open = False  # played to its end: a press now starts a turn, it interrupts nothing
        self.bus.publish(PlayerEvent(session=self.session, turn=self.turn, state="finished", ts=at,
                                     audio_ms=played, device=DEVICE))

    def _interrupt(self, at: float, played_ms: float, reason: str) -> None:
        played = min(played_ms, self.sent_ms)
        self._stop(self.turn, at, played, reason, self.clause_ends if self.last_chunk_seen else self.clause_ends[:-1])
        self.turn_open = False

    def _stop(self, turn: int, at: float, played: float, reason: str, complete: list[float]) -> None:
        """End `turn` as the player ends an interrupted one; `complete`: where its finished clauses end."""
        self.cancelled.append(turn)
        self.bus.publish(Interrupt(session=self.session, turn=turn, reason=reason, ts=at))
        self.bus.publish(PlayerEvent(session=self.session, turn=turn, state="stopped", ts=at, audio_ms=played,
                                     device=DEVICE, clauses_played=sum(1 for end in complete if end <= played + 0.5)))

    # --- heartbeats: the page's own, and the server's answered for this session ------------
    def beat(self) -> None:
        """Once a second: a beat the page answers at once (its round trip times the page's reports)."""
        self.beat_seq += 1
        self.beats_sent[self.beat_seq] = now()
        self.beats_sent = {s: t for s, t in self.beats_sent.items() if s > self.beat_seq - 8}
        self._send({"type": "beat", "seq": self.beat_seq})
        if self.holding and now() - self.held_at > self.settings.max_hold_s:
            self._end_capture(now())
            self._send({"type": "released", "why": f"held longer than {self.settings.max_hold_s:g} s"})
        self.drops.tick()

    def _beat_answer(self, data: dict[str, Any]) -> None:
        sent = self.beats_sent.pop(int(_number(data, "seq", 0, 2**53)), None)
        if sent is not None:
            self.round_trips.append(now() - sent)

    def last_answer_age(self) -> float:
        """Seconds since the oldest beat still unanswered was sent (0 when all were answered)."""
        return now() - min(self.beats_sent.values()) if self.beats_sent else 0.0

    def server_beat(self, beat: Heartbeat) -> None:
        self.bus.publish(Heartbeat(session=self.session, role="edge", host=self.host, echo_seq=beat.seq,
                                   echo_ts=beat.ts))

    def server_link(self, up: bool) -> None:
        self._send({"type": "server", "up": up})

    def close(self) -> None:
        """The socket went: end what the tab had under way, so its record is written now, not on a timeout."""
        if self.holding:
            self._end_capture(now())
        if self.turn_open:
            self._interrupt(now(), self.sent_ms, "browser tab closed")
        self.drops.flush()

    # --- the bus: this session's news, to the page ------------------------------------
    def from_bus(self, env: Envelope) -> None:
        msg = env.msg
        if msg.session != self.session:
            return  # the gateway routes by session; this is the second lock on the door
        if isinstance(msg, TurnRecord):
            if msg.turn == self.turn:
                self.turn_open = False
            self._send({"type": "record", "turn": msg.turn,
                        **{k: msg.record.get(k) for k in RECORD_FIELDS}})
            return
        if isinstance(msg, ToolUsed):
            if msg.name == "timer" and msg.result == "rang" and msg.turn not in self.cancelled:
                self._ring(msg)
            return
        if msg.turn != self.turn or msg.turn in self.cancelled:
            return
        if isinstance(msg, Transcript):
            self._send({"type": "transcript", "turn": msg.turn, "text": msg.text, "final": msg.final})
        elif isinstance(msg, Say):
            self._send({"type": "say", "turn": msg.turn, "text": msg.text, "index": msg.index, "last": msg.last})
        elif isinstance(msg, AudioChunk):
            self._chunk(msg, env.payload)
        elif isinstance(msg, TurnError):
            self.turn_open = False
            self._send({"type": "error", "turn": msg.turn, "stage": msg.stage, "reason": msg.reason})

    def _chunk(self, msg: AudioChunk, payload: bytes) -> None:
        if not 4000 <= msg.sample_rate <= 192_000 or len(payload) % 2 or not 0 <= msg.clause < 1024:
            self.drops.dropped(f"chunk rate {msg.sample_rate}, clause {msg.clause}, {len(payload)} bytes",
                               "audio.out", 1)
            return
        self.sent_ms += 1000.0 * len(payload) / 2 / msg.sample_rate
        while len(self.clause_ends) <= msg.clause:
            self.clause_ends.append(self.sent_ms)
        self.clause_ends[msg.clause] = self.sent_ms
        self.last_chunk_seen = self.last_chunk_seen or msg.last
        if self.first_chunk_at is None and not self.started_sent:
            self.first_chunk_at = now()
        self._send({"type": "chunk", "turn": msg.turn, "index": msg.index, "rate": msg.sample_rate,
                    "clause": msg.clause, "last": msg.last, "bytes": len(payload)})
        if payload:
            self.to_page(payload)

    def _send(self, event: dict[str, Any]) -> None:
        self.to_page(json.dumps(event, separators=(",", ":")))
