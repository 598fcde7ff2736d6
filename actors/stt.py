"""Speech to text: transcribes a turn's mic frames with faster-whisper, mostly before release.

Subscribes to `audio.in` (frames and the capture end) and `vad`; publishes
`stt.partial` while the button is held and `stt.final` at release, or a
`TurnError` when there is nothing to transcribe, so a turn never hangs on
silence. Streaming: a partial runs every `partial_every_ms` of new audio and
at once when VAD hears speech stop; that *settled* partial covers every word,
so when VAD hears nothing after it the final reuses it and release costs no
transcription at all. Otherwise the whole capture is transcribed at release.
A periodic partial waits while the voice fades (the stop is likely next), so
it does not hold the settled one up. The faster-whisper backend is in
actors/stt_whisper.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from actors.base import Actor, on
from actors.stt_languages import AUTO
from audio.wav import SILENCE_DBFS, is_silent, rms_dbfs
from bus.messages import AudioFrame, CaptureEnd, Transcript, VadEvent

SAMPLE_RATE = 16000
MIN_SPEECH_MS = 200.0
"""Shorter captures are a slip of the finger, not a question."""
MAX_TURN_SECONDS = 60.0
"""Audio beyond this is not buffered: memory stays bounded if a button sticks."""
MAX_OPEN_TURNS = 8
"""Turns buffered at once; the oldest is dropped when a new one would exceed it."""


@dataclass
class SttSettings:
    backend: str = "faster-whisper"
    """faster-whisper, http (an OpenAI-compatible /v1/audio/transcriptions server), or fixed (tests: always
    answers `fixed_text`)."""
    model: str = ""
    """A CTranslate2 Whisper model directory, or empty/base (the default, multilingual) or tiny.en (faster,
    mishears more: espeak-ng's questions 21/30 right against base's 25/30; BENCHMARK.md)."""
    compute_type: str = "int8"
    """CTranslate2 compute type: int8 is fastest on a CPU; float32 for a model without int8 weights."""
    beam_size: int = 5
    """Decoding beam. On the answer set spoken by espeak-ng, 5 made 27 word errors against greedy decoding's
    (1) 38; greedy was ~60 ms faster per question on 2 cores (whisper base, 2026-12-02, BENCHMARK.md)."""
    language: str = "en"
    """Spoken language, or auto: the recogniser says which of `languages` it heard, and Rocky answers in it
    where a voice can (needs a multilingual model: base; tiny.en knows only English)."""
    languages: str = "en,fr,es,de,it,pt,nl"
    """With language = auto: the languages it may hear, a comma list (empty: any Whisper knows)."""
    threads: int = 0
    """CPU threads for CTranslate2; 0 takes the CPU plan's share (actors/cpu.py)."""
    fixed_text: str = "hello"
    """The fixed backend's answer to any speech."""
    streaming: bool = True
    """Transcribe while the button is held (False: the sequential flow, all of it after release)."""
    partial_every_ms: float = 500.0
    """New audio between two partials while speech goes on (each also prefills the LLM's prompt)."""
    partial_waits_below_peak_db: float = 25.0
    """A partial due while the newest frame is this far below the turn's loudest waits for a louder one
    (0: never waits). A fading voice is most often the last word ending: VAD's stop and the settled partial
    come next, and a partial begun then would hold the settled one up for its whole length (~200 ms with
    base on 2 cores), the LLM's prefill of it too. Same session, Qwen, +0.2 s, 30 questions each: Piper
    p50/p95 497/695 ms (settled partial reused 28/30) against 532/727 (23/30) without the wait; espeak-ng
    542/798 (26/30) against 564/948 (25/30). Without periodic partials it was slower (p50 561 and 594 ms,
    against 479 and 560 with them run right after: the LLM then prefills the whole question after the stop)."""
    url: str = "http://127.0.0.1:8000/v1"
    """http backend: the server's /v1 base (speaches, faster-whisper-server, whisper.cpp's server; see
    docs/voices.md); the token, if it needs one, comes from ROCKY_RELAY_STT_API_KEY."""
    http_model: str = "Systran/faster-whisper-tiny.en"
    """http backend: the `model` field of each request (what the server calls its model)."""
    response_format: str = "json"
    """http backend: json ({"text": ...}) or text (the bare transcript)."""
    connect_timeout_s: float = 2.0
    """http backend: how long to wait for the server to accept the connection."""
    read_timeout_s: float = 15.0
    """http backend: how long one transcription may take before the turn fails."""
    short_window: bool = True
    """Encode the audio plus 8 s of padding, not Whisper's fixed 30 s window, and cap the tokens by the
    audio's length: ~100 ms instead of ~420 ms per question on 2 cores, as many word errors on the bench's
    answer set (46 vs 52 over 60 recordings); false is the reference behaviour."""


class Recognizer(Protocol):
    description: str

    def transcribe(self, audio: np.ndarray) -> str:
        """Text for float32 mono 16 kHz audio."""


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
    speaking: bool = False
    """VAD's latest word: speech going on."""
    partial_text: str = ""
    partial_samples: int = 0
    """Audio the latest partial covered."""
    partial_language: str = ""
    peak_db: float = SILENCE_DBFS
    newest_db: float = SILENCE_DBFS
    """The loudest frame of the turn so far and the newest one, dBFS."""
    settled: bool = False
    """The latest partial was made after speech stopped and nothing was heard since."""

    def pcm(self) -> np.ndarray:
        """All the turn's audio so far, int16."""
        return np.frombuffer(b"".join(self.chunks), dtype=np.int16)


class SttActor(Actor):
    name: ClassVar[str] = "stt"

    def __init__(self, settings: SttSettings, recognizer: Recognizer | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.recognizer = recognizer
        self.turns: dict[tuple[str, int], _TurnAudio] = {}

    def on_start(self) -> None:
        if self.recognizer is None:
            if self.settings.backend == "faster-whisper":
                from actors.stt_whisper import WhisperRecognizer

                self.recognizer = WhisperRecognizer(self.settings)
            elif self.settings.backend == "http":
                from actors.stt_http import HttpRecognizer

                self.recognizer = HttpRecognizer(self.settings)
            elif self.settings.backend == "fixed":
                self.recognizer = FixedRecognizer(self.settings.fixed_text)
            else:
                raise ValueError(f"stt.backend {self.settings.backend!r}: use faster-whisper, http or fixed")

    def backend(self) -> str:
        return self.recognizer.description if self.recognizer else self.settings.backend

    @on(AudioFrame)
    def _frame(self, msg: AudioFrame, payload: bytes) -> None:
        audio = self._add_frame((msg.session, msg.turn), msg, payload)
        if audio is not None and self._periodic_partial_due(audio):
            self._partial(msg, audio, settled=False)

    def _periodic_partial_due(self, audio: _TurnAudio) -> bool:
        """Enough new speech for a partial, and no sign that the settled one is about to be wanted."""
        if not audio.speaking or (audio.samples - audio.partial_samples) < (
                self.settings.partial_every_ms * SAMPLE_RATE / 1000):
            return False
        return not 0 < self.settings.partial_waits_below_peak_db <= audio.peak_db - audio.newest_db

    @on(VadEvent)
    def _speech_news(self, msg: VadEvent, _payload: bytes) -> None:
        audio = self._turn((msg.session, msg.turn))
        audio.speaking = msg.speech
        audio.settled = False
        if not msg.speech:
            self._partial(msg, audio, settled=True)

    @on(CaptureEnd)
    def _released(self, msg: CaptureEnd, _payload: bytes) -> None:
        self._finish(msg, self.turns.pop((msg.session, msg.turn), _TurnAudio()))

    def on_interrupt(self, msg: object) -> None:
        self.turns = {k: v for k, v in self.turns.items() if not self.is_cancelled(*k)}

    def _turn(self, key: tuple[str, int]) -> _TurnAudio:
        if key not in self.turns:
            while len(self.turns) >= MAX_OPEN_TURNS:
                # Turns whose capture end was lost must not pile up forever.
                self.turns.pop(next(iter(self.turns)))
            self.turns[key] = _TurnAudio()
        return self.turns[key]

    def _add_frame(self, key: tuple[str, int], frame: AudioFrame, pcm: bytes) -> _TurnAudio | None:
        if frame.sample_rate != SAMPLE_RATE:
            self.log.warning("frame_rate_refused", rate=frame.sample_rate, want=SAMPLE_RATE)
            return None
        audio = self._turn(key)
        # Whole samples only (half a sample would shift all later ones), and never past the turn's cap,
        # even when one frame is megabytes long.
        room = max(0, int(MAX_TURN_SECONDS * SAMPLE_RATE) - audio.samples)
        kept = pcm[: 2 * min(len(pcm) // 2, room)]
        if kept:
            audio.chunks.append(kept)
            audio.samples += len(kept) // 2
            audio.newest_db = rms_dbfs(np.frombuffer(kept, dtype=np.int16))
            audio.peak_db = max(audio.peak_db, audio.newest_db)
        return audio

    def _partial(self, about: AudioFrame | VadEvent, audio: _TurnAudio, settled: bool) -> None:
        """Transcribe what is there so far, unless the release already came (the final is due) or, for a
        periodic partial, VAD's stop did (the settled partial is due)."""
        if not self.settings.streaming or audio.samples < MIN_SPEECH_MS * SAMPLE_RATE / 1000:
            return
        self.check_control()
        key = (about.session, about.turn)
        if self.pending(lambda m: (m.session, m.turn) == key and (
                isinstance(m, CaptureEnd) or (not settled and isinstance(m, VadEvent) and not m.speech))):
            return
        pcm = audio.pcm()
        text, compute_ms = self._transcribe(pcm)
        audio.partial_text, audio.partial_samples, audio.partial_language = text, len(pcm), self._heard()
        # Frames that came in meanwhile are still queued; VAD's next word decides whether this holds.
        audio.settled = settled and not audio.speaking
        self.publish(Transcript(session=about.session, turn=about.turn, text=text, final=False,
                                audio_ms=1000.0 * len(pcm) / SAMPLE_RATE, compute_ms=compute_ms,
                                settled=audio.settled, language=audio.partial_language))

    def _transcribe(self, pcm: np.ndarray) -> tuple[str, float]:
        """The recogniser's text for int16 audio, and the milliseconds it took."""
        assert self.recognizer is not None
        started = time.perf_counter()
        text = self.recognizer.transcribe(pcm.astype(np.float32) / 32768.0)
        return text, 1000.0 * (time.perf_counter() - started)

    def _heard(self) -> str:
        """The language of the last transcription: what the recogniser detected (auto), else the setting."""
        heard = str(getattr(self.recognizer, "heard_language", ""))
        return heard or ("" if self.settings.language == AUTO else self.settings.language)

    def _finish(self, end: CaptureEnd, audio: _TurnAudio) -> None:
        pcm = audio.pcm()
        audio_ms = 1000.0 * len(pcm) / SAMPLE_RATE
        if audio_ms < MIN_SPEECH_MS:
            self.fail_turn(end, f"no speech heard: only {audio_ms:.0f} ms of audio arrived")
            return
        if is_silent(pcm):
            self.fail_turn(end, "no speech heard: the recording is silent (check the microphone)")
            return
        # `settled` is cleared by any VAD news after the partial, so it alone says nothing followed.
        reuse = audio.settled and bool(audio.partial_text)
        text, compute_ms = (audio.partial_text, 0.0) if reuse else self._transcribe(pcm)
        language = audio.partial_language if reuse else self._heard()
        if not text:
            self.fail_turn(end, "no words recognised in the recording")
            return
        self.log.info("transcribed", turn=end.turn, text=text, audio_ms=audio_ms, compute_ms=compute_ms,
                      reused_partial=reuse)
        self.publish(Transcript(session=end.session, turn=end.turn, text=text, final=True,
                                audio_ms=audio_ms, compute_ms=compute_ms, reused_partial=reuse, language=language))
