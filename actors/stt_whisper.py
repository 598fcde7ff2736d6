"""The stt actor's faster-whisper backend: a local CTranslate2 Whisper model, on a window cut to the audio.

Loaded from a local directory only (never a hub download), with its CPU threads from the CPU plan
(actors/cpu.py). Whisper pads every input to 30 s; `short_window` encodes only the audio and some padding.
"""

from __future__ import annotations

import numpy as np

from actors.cpu import quiet_thread_pools, threads_for
from actors.stt import SAMPLE_RATE, SttSettings
from actors.stt_languages import AUTO, check_language_setting, heard_language
from actors.stt_repeats import without_repeats

FULL_WINDOW_FRAMES = 3000
"""Whisper's own window: 30 s of mel frames."""
WINDOW_SPARE_S = 8
"""Padding kept after the audio in a short window (see `window_frames`)."""


class WhisperRecognizer:
    """faster-whisper on the CPU, loaded from a local directory only (never a hub download)."""

    def __init__(self, settings: SttSettings) -> None:
        quiet_thread_pools()  # before CTranslate2 (and its OpenMP runtime) is loaded
        model_class = _short_window_class()

        from models.manifest import known_model
        from models.registry import stt_model_dir

        path = stt_model_dir(settings.model)
        name = known.key if (known := known_model("stt", settings.model)) else settings.model
        self.settings = settings
        self.threads = threads_for("stt", settings.threads)
        self.description = f"faster-whisper {name} {settings.compute_type}, {self.threads} threads"
        self.model = model_class(str(path), device="cpu", compute_type=settings.compute_type,
                                 cpu_threads=self.threads, local_files_only=True)
        check_language_setting(self.model, settings.language, name, settings.languages)
        self.heard_language = ""
        """The language of the last transcription."""
        # The first call pays for lazy initialisation; do it now, not in the first turn.
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def transcribe(self, audio: np.ndarray) -> str:
        short = self.settings.short_window
        self.model.window_frames = window_frames(len(audio)) if short else FULL_WINDOW_FRAMES
        language = self.settings.language
        if language == AUTO:
            language = heard_language(self.model, audio, self.settings.languages)
        self.heard_language = language
        segments, _info = self.model.transcribe(
            audio, language=language or None, beam_size=self.settings.beam_size,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            max_new_tokens=max_new_tokens(len(audio)) if short else None)
        return without_repeats(" ".join(seg.text.strip() for seg in segments).strip())


def window_frames(samples: int) -> int:
    """Mel frames (100 a second) to encode for `samples` of audio: its whole seconds and the spare padding.
    Less padding is faster still, but the decoder then loops (with 1-4 s, before `without_repeats`, half
    the answer set's questions came back repeated until the token limit) and mishears more (4 s: 33 word
    errors on espeak-ng's questions against 27, for ~50 ms less per question; BENCHMARK.md)."""
    seconds = -(-samples // SAMPLE_RATE) + WINDOW_SPARE_S
    return min(FULL_WINDOW_FRAMES, 100 * seconds)


def max_new_tokens(samples: int) -> int:
    """More tokens than anyone says in that time (about 3 words a second), so a loop is cut short."""
    return int(8 * samples / SAMPLE_RATE) + 10


def _short_window_class() -> type:
    from faster_whisper import WhisperModel

    class ShortWindowWhisper(WhisperModel):  # type: ignore[misc]
        """faster-whisper pads every segment to 30 s of mel frames; CTranslate2's encoder takes fewer, so
        the zero padding past `window_frames` is cut before encoding (whisper.cpp's audio_ctx trick)."""

        window_frames = FULL_WINDOW_FRAMES

        def encode(self, features: np.ndarray) -> object:
            return super().encode(features[..., : self.window_frames])

    return ShortWindowWhisper
