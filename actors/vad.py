"""Voice activity: marks where speech starts and stops in a turn's mic frames (webrtcvad and loudness).

Subscribes to `audio.in`; publishes `vad` events. Single voiced or unvoiced
frames are noise: a change is declared only after `start_frames` voiced or
`stop_frames` unvoiced frames in a row. A frame far quieter than the turn's
loudest counts as unvoiced whatever webrtcvad says: webrtcvad calls the fading
end of a word speech for about another 100 ms, which put the stop after most
releases (see `quiet_below_peak_db`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from actors.base import Actor, on
from audio.wav import SILENCE_DBFS, rms_dbfs
from bus.messages import AudioFrame, CaptureEnd, VadEvent

FRAME_MS = 20
VAD_RATES = (8000, 16000, 32000, 48000)
"""The only sample rates webrtcvad accepts."""
MAX_OPEN_TURNS = 8
"""Turns tracked at once; the oldest is dropped when a new one would exceed it."""


@dataclass
class VadSettings:
    aggressiveness: int = 2
    """webrtcvad mode 0 (least) to 3 (most eager to call audio non-speech)."""
    start_frames: int = 3
    """60 ms of speech (3 frames of 20 ms) starts an utterance; shorter blips are noise."""
    stop_frames: int = 4
    """80 ms of non-speech (4 frames) ends an utterance: the settled partial starts then. People let go of
    the button 0.2-0.4 s after their last word, so the partial must be made before that to be reused; with
    `quiet_below_peak_db` the stop comes ~80 ms after the voice fades and the settled partial is ready
    about as the button comes up. A stop is only a hint (the button ends the turn): a longer pause between
    words (one in launch/samples/prompt-3s.wav) costs a partial and a begun reply that the next word throws
    away. Full bench runs, release +0.2 s, Qwen, whisper base: 4 frames p50/p95 477/794 ms (the final
    reused the settled partial on 26 of 30), 5 frames 535/894 (19 of 30)."""
    quiet_below_peak_db: float = 40.0
    """A frame this many dB below the loudest frame of the turn so far is not speech (0: webrtcvad alone,
    which calls the fading end of a word speech for about another 100 ms). On the bench's 60 questions said
    by Piper and espeak-ng over a -60 dBFS room, the stop came a median 126 ms after the last audible sample
    instead of 233 ms (6 stop frames), with no extra stop mid-sentence. Where the room's noise is within
    this of the voice, no frame is that quiet and webrtcvad decides alone. Measured on the 2-core AMD box
    (2026-12-02), release +0.2 s, Qwen, 30 questions by Piper: release -> first audio p50/p95 579/807 ms
    with webrtcvad alone and 6 frames, 509/625 with this and 6 frames, 438-511/594-620 with 4 (the final
    reuses the settled partial on 28-30 of 30), right 29 and 28 of 30."""


class SpeechDetector(Protocol):
    def is_speech(self, pcm: bytes, sample_rate: int) -> bool: ...


@dataclass
class _TurnState:
    speaking: bool = False
    run: int = 0
    frames: int = 0
    peak_db: float = SILENCE_DBFS
    """The loudest frame of the turn so far, dBFS."""


class VadActor(Actor):
    name: ClassVar[str] = "vad"

    def __init__(self, settings: VadSettings, detector: SpeechDetector | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.detector = detector
        self.turns: dict[tuple[str, int], _TurnState] = {}

    def on_start(self) -> None:
        if self.detector is None:
            import webrtcvad

            self.detector = webrtcvad.Vad(self.settings.aggressiveness)

    def backend(self) -> str:
        return f"webrtcvad mode {self.settings.aggressiveness}"

    @on(CaptureEnd)
    def _released(self, msg: CaptureEnd, _payload: bytes) -> None:
        state = self.turns.pop((msg.session, msg.turn), None)
        if state is not None and state.speaking:
            self.publish(VadEvent(session=msg.session, turn=msg.turn, speech=False,
                                  audio_ms=float(state.frames * FRAME_MS)))

    @on(AudioFrame)
    def _frame(self, msg: AudioFrame, payload: bytes) -> None:
        key = (msg.session, msg.turn)
        if msg.sample_rate not in VAD_RATES or len(payload) != msg.sample_rate * FRAME_MS // 1000 * 2:
            # webrtcvad takes only these rates and 10/20/30 ms frames (ours are 20 ms); anything
            # else would make it raise on every frame.
            self.log.warning("frame_refused", rate=msg.sample_rate, payload_bytes=len(payload))
            return
        assert self.detector is not None
        if key not in self.turns:
            while len(self.turns) >= MAX_OPEN_TURNS:  # turns whose capture end was lost
                self.turns.pop(next(iter(self.turns)))
        state = self.turns.setdefault(key, _TurnState())
        state.frames += 1
        level = rms_dbfs(np.frombuffer(payload, dtype=np.int16))
        state.peak_db = max(state.peak_db, level)
        quiet = 0 < self.settings.quiet_below_peak_db <= state.peak_db - level
        voiced = not quiet and self.detector.is_speech(payload, msg.sample_rate)
        state.run = state.run + 1 if voiced != state.speaking else 0
        needed = self.settings.stop_frames if state.speaking else self.settings.start_frames
        if state.run >= needed:
            state.speaking, state.run = not state.speaking, 0
            # The change began `needed` frames ago, when the run started.
            at_ms = float((state.frames - needed) * FRAME_MS)
            self.publish(VadEvent(session=msg.session, turn=msg.turn, speech=state.speaking, audio_ms=at_ms))

