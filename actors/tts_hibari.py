"""The hibari backend: a Kokoro-distilled voice (af_heart, 24 kHz int8 ONNX) that ships inside its wheel.

hibari fetches its other voices from Hugging Face the first time they are asked for; this project never
downloads weights at run time, so only the bundled voice is accepted and its file is handed to hibari by
path (hibari's own lookup, which downloads, is never reached).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from actors.tts_backends import WARM_UP_TEXT, TtsBackendError
from audio.wav import Int16Array, to_pcm16
from models.voices import HIBARI_VOICE, find_voice

HIBARI_THREADS = 1
"""The model runs ~100x real time on one core; more threads only compete with STT and the LLM."""


def bundled_model() -> Path:
    """The af_heart ONNX inside the installed wheel, found without any download path being touched."""
    try:
        from hibari.voices import VOICES, voice_path
    except ImportError as exc:
        raise TtsBackendError("tts.backend hibari needs the hibari-tts package: pip install hibari-tts") from exc
    entry = VOICES.get(HIBARI_VOICE, {})
    if not entry.get("bundled"):
        raise TtsBackendError(f"this hibari-tts has no bundled {HIBARI_VOICE!r} voice; install hibari-tts 0.2.1")
    path = Path(voice_path(HIBARI_VOICE, download_missing=False))
    if not path.is_file():
        raise TtsBackendError(f"hibari's bundled voice is missing at {path}: pip install --force-reinstall hibari-tts")
    return path


def check_hibari_voice(voice: str) -> None:
    """Refuse anything but the bundled voice, before hibari could be asked to download it."""
    entry = find_voice(voice)
    if voice and (entry is None or entry.name != HIBARI_VOICE):
        raise TtsBackendError(
            f"tts.voice {voice!r}: the hibari backend speaks only its bundled voice {HIBARI_VOICE!r} (af_heart); "
            "hibari's other voices would be downloaded at run time, which this project never does")


class HibariSynthesizer:
    """hibari's bundled voice in process, one sentence at a time, on one thread that never spin-waits."""

    def __init__(self, voice: str = "", speed: float = 1.0) -> None:
        check_hibari_voice(voice)
        from hibari import Hibari

        from actors.tts import onnx_session

        path = bundled_model()
        self.engine = Hibari(voice=HIBARI_VOICE, model=str(path), threads=HIBARI_THREADS)
        # hibari's session keeps onnxruntime's default spin-waiting; ours sleeps between sentences. The
        # model is 8 MB, so loading it a second time costs a few milliseconds, once.
        self.engine.sess = onnx_session(path, HIBARI_THREADS)
        self.speed = speed
        self.sample_rate = int(Hibari.sample_rate)
        self.description = f"hibari {HIBARI_VOICE} (af_heart) {self.sample_rate} Hz, {HIBARI_THREADS} thread"
        for _ in self.synthesize(WARM_UP_TEXT):  # loads the G2P and warms onnxruntime before the first turn
            pass

    def synthesize(self, text: str) -> Iterator[Int16Array]:
        for audio in self.engine.stream(text, speed=self.speed):
            if len(audio):
                yield to_pcm16(np.asarray(audio, dtype=np.float32))
