"""Text to speech: speaks each `say` clause as it arrives and streams the PCM out.

Subscribes to `say`; publishes `audio.out` chunks (int16 mono PCM as the raw
payload) and a closing chunk with `last=True` after the reply's last clause.
Backends: piper (the product, in process), http (a local TTS server such as
piper.http_server; see docs/tts-servers.md), espeak (the espeak-ng program: a
tiny fast fallback), silent and tone (tests and smoke runs). The two outside
voices live in actors/tts_backends.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from actors.base import Actor, on
from actors.cpu import threads_for
from actors.tts_backends import EspeakSynthesizer, HttpSynthesizer
from bus.messages import AudioChunk, Say

MAX_CHUNK_BYTES = 256 * 1024
"""Audio per chunk at most (8 s at 16 kHz): a long clause, or a whole reply in the sequential flow, goes out
in several, so no single message is big enough to meet the bus's per-publisher byte budget or frame limit."""


@dataclass
class TtsSettings:
    backend: str = "piper"
    """piper, http, espeak, silent or tone (the last two are for tests)."""
    voice: str = ""
    """A Piper voice .onnx (with its .onnx.json); empty means the embedded en_US-joe-medium."""
    length_scale: float = 1.0
    """Speaking pace: below 1 is faster."""
    threads: int = 0
    """CPU threads for Piper's onnxruntime session; 0 takes the CPU plan's share (actors/cpu.py)."""
    sample_rate: int = 22050
    """Rate of the silent and tone backends (Piper uses its voice's own)."""
    streaming: bool = True
    """Send each piece as soon as it is synthesised (False: the sequential flow, one chunk per reply)."""
    url: str = "http://127.0.0.1:5000/synthesize"
    """http backend: the server's synthesis URL (this one is `python -m piper.http_server`'s default)."""
    request: str = "json"
    """http backend: json (POST {text_field: text, **extra_fields}), text (POST the bare text) or
    query (GET url?text_field=text&extra_fields...). The answer must be a 16-bit PCM WAV."""
    text_field: str = "text"
    """http backend: the field that carries the text (piper and Coqui: text; OpenAI-style servers: input)."""
    extra_fields: str = ""
    """http backend: more request fields as a JSON object, e.g. '{"voice": "af_sky", "response_format": "wav"}'."""
    connect_timeout_s: float = 2.0
    """http backend: how long to wait for the server to accept the connection."""
    read_timeout_s: float = 30.0
    """http backend: how long the server may stay silent while answering one clause."""
    espeak_command: str = "espeak-ng"
    """espeak backend: the program (a name on PATH or a path)."""
    espeak_voice: str = "en-us"
    """espeak backend: an espeak-ng voice (`espeak-ng --voices` lists them)."""
    espeak_wpm: int = 175
    """espeak backend: speaking pace in words per minute."""
    espeak_timeout_s: float = 10.0
    """espeak backend: a clause that takes longer is stopped and its turn fails (a hung program)."""


class Synthesizer(Protocol):
    description: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """int16 mono audio for `text`, in one or more pieces."""


class PiperSynthesizer:
    def __init__(self, settings: TtsSettings) -> None:
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        from models.registry import tts_voice_file

        path = tts_voice_file(settings.voice)
        # Not PiperVoice.load: its session sizes its pool to the machine and spins between runs, and
        # replacing it afterwards would load the model twice. Ours has the plan's threads and sleeps.
        config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
        self.voice = PiperVoice(config=config, session=onnx_session(path, threads_for("tts", settings.threads)))
        self.config = SynthesisConfig(length_scale=settings.length_scale)
        self.sample_rate = int(self.voice.config.sample_rate)
        self.description = f"piper {path.stem}"
        for _ in self.synthesize("Hello."):  # warm onnxruntime before the first turn
            pass

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for chunk in self.voice.synthesize(text, syn_config=self.config):
            yield chunk.audio_int16_array


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with `threads` intra-op threads that do not spin-wait."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class SilentSynthesizer:
    """Silence as long as the words would take to say: exercises the pipeline without a voice."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.description = "silent"

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        yield np.zeros(int(0.06 * len(text) * self.sample_rate) + 1, dtype=np.int16)


class ToneSynthesizer:
    """A beep per word: audible, recognisable in a recording, and needs no model."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.description = "tone"

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for _word in text.split():
            t = np.arange(int(0.12 * self.sample_rate)) / self.sample_rate
            beep = 0.3 * np.sin(2 * math.pi * 660.0 * t)
            gap = np.zeros(int(0.04 * self.sample_rate))
            yield (np.concatenate([beep, gap]) * 32767).astype(np.int16)


def make_synthesizer(settings: TtsSettings) -> Synthesizer:
    if settings.backend == "piper":
        return PiperSynthesizer(settings)
    if settings.backend == "http":
        return HttpSynthesizer(settings.url, settings.request, settings.text_field, settings.extra_fields,
                               settings.connect_timeout_s, settings.read_timeout_s)
    if settings.backend == "espeak":
        return EspeakSynthesizer(settings.espeak_command, settings.espeak_voice, settings.espeak_wpm,
                                 settings.espeak_timeout_s)
    if settings.backend == "silent":
        return SilentSynthesizer(settings.sample_rate)
    if settings.backend == "tone":
        return ToneSynthesizer(settings.sample_rate)
    raise ValueError(f"tts.backend {settings.backend!r}: use piper, http, espeak, silent or tone")


class TtsActor(Actor):
    name: ClassVar[str] = "tts"

    def __init__(self, settings: TtsSettings, synthesizer: Synthesizer | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.synth = synthesizer
        self.chunk_index: dict[tuple[str, int], int] = {}

    def on_start(self) -> None:
        if self.synth is None:
            self.synth = make_synthesizer(self.settings)

    def backend(self) -> str:
        return self.synth.description if self.synth else self.settings.backend

    @on(Say)
    def _speak(self, msg: Say, _payload: bytes) -> None:
        assert self.synth is not None
        key = (msg.session, msg.turn)
        if msg.index == 0:
            self.chunk_index[key] = 0
            while len(self.chunk_index) > 16:  # turns whose last clause never came
                self.chunk_index.pop(next(iter(self.chunk_index)))
        if msg.text.strip():
            pieces: list[bytes] = []
            for pcm in self.synth.synthesize(msg.text):
                self.check_control()
                if self.is_cancelled(*key) or self.stopping:
                    self.chunk_index.pop(key, None)
                    return
                if self.settings.streaming:
                    self._send(msg, pcm.tobytes(), last=False)
                else:
                    pieces.append(pcm.tobytes())
            if pieces:
                self._send(msg, b"".join(pieces), last=False)
        if msg.last:
            self._send(msg, b"", last=True)
            self.chunk_index.pop(key, None)

    def _send(self, say: Say, pcm: bytes, last: bool) -> None:
        """`pcm` as chunks of at most MAX_CHUNK_BYTES (whole samples), `last` on the final one."""
        pieces = [pcm[at: at + MAX_CHUNK_BYTES] for at in range(0, len(pcm), MAX_CHUNK_BYTES)] or [b""]
        for i, piece in enumerate(pieces):
            self._send_one(say, piece, last=last and i == len(pieces) - 1)

    def _send_one(self, say: Say, pcm: bytes, last: bool) -> None:
        assert self.synth is not None
        key = (say.session, say.turn)
        index = self.chunk_index.get(key, 0)
        self.chunk_index[key] = index + 1
        while len(self.chunk_index) > 16:  # turns whose last clause never came
            self.chunk_index.pop(next(iter(self.chunk_index)))
        self.publish(AudioChunk(session=say.session, turn=say.turn, index=index, clause=say.index,
                                sample_rate=self.synth.sample_rate, last=last), pcm)
