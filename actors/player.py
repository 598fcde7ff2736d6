"""The player: plays `audio.out` chunks as they arrive, on a sound device or into a WAV file.

Publishes `player` events: `started` with the moment the first audio was
handed to the device, `finished` when the reply's last sample is out, and
`stopped` when an interrupt silenced it. A `turn.error` for a turn that has not
started playing sounds a short earcon on a sound device, so a user never waits
on silence.

On a satellite the player is also the link's edge: it answers the server's
heartbeats (actors/link.py), and when they stop it ends the turn in flight —
playback stopped, the error earcon — since no `turn.error` can cross a dead
link.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from actors.base import Actor, on
from actors.link import HOST, LINK_TIMEOUT_S, LinkWatch
from actors.sinks import Sink, SoundDeviceSink, WavFileSink, error_earcon
from audio.effects import check_volume, with_volume
from bus.codec import Envelope
from bus.messages import AudioChunk, ButtonEvent, Heartbeat, Interrupt, PlayerEvent, Transcript, TurnError, now

MAX_RATE = 384_000
MAX_CLAUSES = 1024
"""Limits on what a chunk off the bus may claim: a WAV header must hold the rate, a list the clause."""
MAX_UNDER_WAY = 256
"""Turns under way the player remembers (a flood of fake presses must not grow it without end)."""
ACTIVE_POLL_MS = 5.0
IDLE_POLL_MS = 200.0


@dataclass
class PlayerSettings:
    backend: str = "sounddevice"
    """sounddevice (a real output device) or wav (write each reply to `path`)."""
    device: str = ""
    """sounddevice output device name or index; empty means the system default."""
    path: str = "logs/replies/{session}-{turn}.wav"
    """WAV backend: where replies go; {session} and {turn} are filled in."""
    block_ms: float = 20.0
    """sounddevice block: an interrupt silences the output within one block."""
    streaming: bool = True
    """Play each chunk as it arrives (False: the sequential flow, play once the reply's audio is whole)."""
    volume: float = 1.0
    """Loudness of replies and earcons: 1 as synthesised, 0.5 about 6 dB quieter, 0 silent, up to 4 (clipped)."""


class PlayerActor(Actor):
    name: ClassVar[str] = "player"
    # stt.final: a turn under way before any audio (typed, or still being answered) that an interrupt may end.
    topics = ("audio.out", "turn.error", "button", "stt.final")

    def __init__(self, settings: PlayerSettings, sink: Sink | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.volume = check_volume(settings.volume)
        self.sink = sink
        self.current: tuple[str, int] | None = None
        self.started_sent = False
        self.last_seen = False
        self.held: list[bytes] = []
        self.clause_ends: list[float] = []
        """Audio ms at which each clause of the current reply ends."""
        self.written_ms = 0.0
        self.runs_out_at: float | None = None
        """When the reply's audio so far has all been played, played in real time from its first sample."""
        self.stalled_ms = 0.0
        self.open_turn: tuple[str, int] | None = None
        """This satellite's turn from its press until its reply is over (what a lost link must end)."""
        self.link = LinkWatch(LINK_TIMEOUT_S)
        self.under_way: OrderedDict[tuple[str, int], None] = OrderedDict()
        """Turns begun (a press, a final transcript, audio) and not yet over: the only ones an interrupt
        gets a `stopped` for; anyone's interrupt for a turn that never was must not close a record."""

    def on_start(self) -> None:
        if self.sink is None:
            if self.settings.backend == "sounddevice":
                self.sink = SoundDeviceSink(self.settings.device, self.settings.block_ms)
            elif self.settings.backend == "wav":
                self.sink = WavFileSink(self.settings.path)
            else:
                raise ValueError(f"player.backend {self.settings.backend!r}: use sounddevice or wav")

    def backend(self) -> str:
        return self.sink.description if self.sink else self.settings.backend

    def _begun(self, key: tuple[str, int]) -> None:
        self.under_way[key] = None
        while len(self.under_way) > MAX_UNDER_WAY:
            self.under_way.popitem(last=False)

    @on(Transcript)
    def _question(self, msg: Transcript, _payload: bytes) -> None:
        if msg.final:
            self._begun((msg.session, msg.turn))

    @on(AudioChunk)
    def _chunk(self, msg: AudioChunk, payload: bytes) -> None:
        assert self.sink is not None
        if not 1 <= msg.sample_rate <= MAX_RATE or not 0 <= msg.clause < MAX_CLAUSES or len(payload) % 2:
            self.log.warning("chunk_refused", turn=msg.turn, rate=msg.sample_rate, clause=msg.clause,
                             payload_bytes=len(payload))
            return
        key = (msg.session, msg.turn)
        self._begun(key)
        if self.current != key:
            if self.current is not None:
                self._stop("superseded")
            self.current, self.started_sent, self.last_seen = key, False, False
            self.held, self.clause_ends, self.written_ms = [], [], 0.0
            self.runs_out_at, self.stalled_ms = None, 0.0
            self.sink.begin(msg.session, msg.turn, msg.sample_rate)
            self.poll_ms = ACTIVE_POLL_MS
        seconds = len(payload) / 2 / msg.sample_rate
        self._keep_pace(seconds)
        self.written_ms += 1000.0 * seconds
        while len(self.clause_ends) <= msg.clause:
            self.clause_ends.append(self.written_ms)
        self.clause_ends[msg.clause] = self.written_ms
        payload = with_volume(payload, self.volume)
        if payload and self.settings.streaming:
            self.sink.write(payload, msg.sample_rate)
        elif payload:
            self.held.append(payload)
        if msg.last:
            if self.held:
                self.sink.write(b"".join(self.held), msg.sample_rate)
                self.held = []
            self.last_seen = True
            self.sink.end()
        self._report()

    def _keep_pace(self, seconds: float) -> None:
        """Count the silence a real-time device would have had before this audio (on every sink alike, so the
        WAV player of the bench reports the stalls the speaker would have)."""
        if not seconds or not self.settings.streaming:
            return
        now = time.time()
        if self.runs_out_at is not None and now > self.runs_out_at:
            self.stalled_ms += 1000.0 * (now - self.runs_out_at)
        self.runs_out_at = max(now, self.runs_out_at or now) + seconds

    @on(TurnError)
    def _turn_failed(self, msg: TurnError, _payload: bytes) -> None:
        assert self.sink is not None
        self.under_way.pop((msg.session, msg.turn), None)
        if (msg.session, msg.turn) == self.open_turn:
            self.open_turn = None
        if (msg.session, msg.turn) != self.current:
            self.sink.play_earcon(self._earcon())

    @on(ButtonEvent)
    def _button(self, msg: ButtonEvent, _payload: bytes) -> None:
        if msg.pressed:
            self.open_turn = (msg.session, msg.turn)
            self._begun(self.open_turn)

    def watch_links(self, timeout_s: float) -> None:
        super().watch_links(timeout_s)
        self.link.timeout_s = timeout_s

    def on_control(self, env: Envelope) -> None:
        beat = env.msg
        if isinstance(beat, Heartbeat) and beat.role == "server":
            if self.link.beat(now()):
                self.log.info("link_restored")
            self.publish(Heartbeat(session=self.only_session or beat.session, role="edge", host=HOST,
                                   echo_seq=beat.seq, echo_ts=beat.ts))

    def on_idle(self) -> None:
        self._report()
        if self.link.poll(now()):
            self.log.warning("link_lost", open_turn=self.open_turn)
            if self.current is not None:
                self._stop("link lost")
            if self.open_turn is not None and self.sink is not None:
                self.sink.play_earcon(self._earcon())
            self.open_turn = None

    def on_interrupt(self, msg: Interrupt) -> None:
        key = (msg.session, msg.turn)
        if self.current == key:
            self._stop("interrupted")
        elif key in self.under_way:  # nothing of that turn played yet: say so, so the turn closes, memory drops it
            del self.under_way[key]
            self.publish(PlayerEvent(session=msg.session, turn=msg.turn, state="stopped", clauses_played=0,
                                     device=self.sink.description if self.sink else ""))
        else:
            self.log.info("interrupt_ignored", session=msg.session, turn=msg.turn, why="no such turn under way")

    def _earcon(self) -> tuple[np.ndarray, int]:
        tone, rate = error_earcon()
        return (tone * self.volume).astype(tone.dtype), rate

    def on_stop(self) -> None:
        if self.sink is not None:
            self.sink.close()

    def _report(self) -> None:
        """Publish started/finished as the sink's playback progresses."""
        if self.current is None or self.sink is None:
            return
        session, turn = self.current
        first = self.sink.first_audio_at()
        if first is not None and not self.started_sent:
            self.started_sent = True
            self.publish(PlayerEvent(session=session, turn=turn, state="started", ts=first,
                                     device=self.sink.description))
        done = self.sink.done_at()
        if self.last_seen and done is not None:
            if not self.started_sent:  # a reply with no audio at all still finishes the turn
                self.publish(PlayerEvent(session=session, turn=turn, state="started", ts=done,
                                         device=self.sink.description))
            self.publish(PlayerEvent(session=session, turn=turn, state="finished", ts=done,
                                     audio_ms=self.sink.played_ms(), device=self.sink.description,
                                     stalled_ms=round(self.stalled_ms, 1)))
            if self.open_turn == self.current:
                self.open_turn = None
            self.under_way.pop(self.current, None)
            self.current = None
            self.poll_ms = IDLE_POLL_MS

    def _stop(self, why: str) -> None:
        assert self.sink is not None and self.current is not None
        session, turn = self.current
        silent_at = self.sink.stop()
        played = self.sink.played_ms()
        # A clause counts as played when its last sample was; the open clause may still be growing.
        complete = self.clause_ends[:-1] if not self.last_seen else self.clause_ends
        clauses_played = sum(1 for end in complete if end <= played + 0.5)
        self.log.info("playback_stopped", turn=turn, why=why, played_ms=played, clauses_played=clauses_played)
        self.publish(PlayerEvent(session=session, turn=turn, state="stopped", ts=silent_at, audio_ms=played,
                                 device=self.sink.description, clauses_played=clauses_played,
                                 stalled_ms=round(self.stalled_ms, 1)))
        self.under_way.pop(self.current, None)
        self.current = None
        self.poll_ms = IDLE_POLL_MS
