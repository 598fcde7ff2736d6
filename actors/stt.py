"""Speech to text: buffers a turn's mic frames and transcribes them with faster-whisper.

Subscribes to `audio.in` (frames and the capture end) and `vad`; publishes the
final transcript on `stt.final`, or a `TurnError` when there is nothing to
transcribe, so a turn never hangs on silence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from actors.base import Actor
from bus.codec import Envelope
from bus.messages import AudioFrame, CaptureEnd, Transcript, VadEvent
from bus.wav import is_silent

SAMPLE_RATE = 16000
MIN_SPEECH_MS = 200.0
"""Shorter captures are a slip of the finger, not a question."""
MAX_TURN_SECONDS = 60.0
"""Audio beyond this is not buffered: memory stays bounded if a button sticks."""


@dataclass
class SttSettings:
    backend: str = "faster-whisper"
    """faster-whisper, or fixed (tests: always answers `fixed_text`)."""
    model: str = ""
    """A CTranslate2 Whisper model directory; empty means the embedded tiny.en."""
    compute_type: str = "int8"
    beam_size: int = 1
    language: str = "en"
    threads: int = 2
    fixed_text: str = "hello"


class Recognizer(Protocol):
    description: str

    def transcribe(self, audio: np.ndarray) -> str:
        """Text for float32 mono 16 kHz audio."""


class WhisperRecognizer:
    """faster-whisper on the CPU, loaded from a local directory only (never a hub download)."""

    def __init__(self, settings: SttSettings) -> None:
        from faster_whisper import WhisperModel

        from models.registry import stt_model_dir

        path = stt_model_dir(settings.model)
        self.settings = settings
        self.description = f"faster-whisper {settings.model or 'tiny.en'} {settings.compute_type}"
        self.model = WhisperModel(str(path), device="cpu", compute_type=settings.compute_type,
                                  cpu_threads=settings.threads, local_files_only=True)
        # The first call pays for lazy initialisation; do it now, not in the first turn.
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def transcribe(self, audio: np.ndarray) -> str:
        segments, _info = self.model.transcribe(
            audio, language=self.settings.language or None, beam_size=self.settings.beam_size,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False)
        return " ".join(seg.text.strip() for seg in segments).strip()


class FixedRecognizer:
    """Answers the same text for any speech: for tests that need no model."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.description = f"fixed {text!r}"

    def transcribe(self, audio: np.ndarray) -> str:
        return self.text


@dataclass
class _TurnAudio:
    chunks: list[bytes] = field(default_factory=list)
    samples: int = 0
    speech_seen: bool = False


class SttActor(Actor):
    name: ClassVar[str] = "stt"
    topics = ("audio.in", "vad")

    def __init__(self, settings: SttSettings, recognizer: Recognizer | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.recognizer = recognizer
        self.turns: dict[tuple[str, int], _TurnAudio] = {}

    def on_start(self) -> None:
        if self.recognizer is None:
            if self.settings.backend == "faster-whisper":
                self.recognizer = WhisperRecognizer(self.settings)
            elif self.settings.backend == "fixed":
                self.recognizer = FixedRecognizer(self.settings.fixed_text)
            else:
                raise ValueError(f"stt.backend {self.settings.backend!r}: use faster-whisper or fixed")

    def backend(self) -> str:
        return self.recognizer.description if self.recognizer else self.settings.backend

    def handle(self, env: Envelope) -> None:
        msg = env.msg
        key = (msg.session, msg.turn)
        if isinstance(msg, AudioFrame):
            self._add_frame(key, msg, env.payload)
        elif isinstance(msg, VadEvent) and msg.speech:
            self.turns.setdefault(key, _TurnAudio()).speech_seen = True
        elif isinstance(msg, CaptureEnd):
            self._finish(msg, self.turns.pop(key, _TurnAudio()))

    def on_interrupt(self, msg: object) -> None:
        self.turns = {k: v for k, v in self.turns.items() if not self.is_cancelled(*k)}

    def _add_frame(self, key: tuple[str, int], frame: AudioFrame, pcm: bytes) -> None:
        if frame.sample_rate != SAMPLE_RATE:
            self.log.warning("frame_rate_refused", rate=frame.sample_rate, want=SAMPLE_RATE)
            return
        if len(self.turns) > 8 and key not in self.turns:
            # Turns whose capture end was lost must not pile up forever.
            self.turns.pop(next(iter(self.turns)))
        audio = self.turns.setdefault(key, _TurnAudio())
        if audio.samples < MAX_TURN_SECONDS * SAMPLE_RATE:
            audio.chunks.append(pcm)
            audio.samples += len(pcm) // 2

    def _finish(self, end: CaptureEnd, audio: _TurnAudio) -> None:
        assert self.recognizer is not None
        pcm = np.frombuffer(b"".join(audio.chunks), dtype=np.int16)
        audio_ms = 1000.0 * len(pcm) / SAMPLE_RATE
        if audio_ms < MIN_SPEECH_MS:
            self.fail_turn(end, f"no speech heard: only {audio_ms:.0f} ms of audio arrived")
            return
        if is_silent(pcm):
            self.fail_turn(end, "no speech heard: the recording is silent (check the microphone)")
            return
        started = time.perf_counter()
        text = self.recognizer.transcribe(pcm.astype(np.float32) / 32768.0)
        compute_ms = 1000.0 * (time.perf_counter() - started)
        if not text:
            self.fail_turn(end, "no words recognised in the recording")
            return
        self.log.info("transcribed", turn=end.turn, text=text, audio_ms=audio_ms, compute_ms=compute_ms)
        self.publish(Transcript(session=end.session, turn=end.turn, text=text, final=True,
                                audio_ms=audio_ms, compute_ms=compute_ms))
