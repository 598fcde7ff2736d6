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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from actors.base import Actor, on
from actors.cpu import threads_for
from actors.languages import espeak_voice_for
from actors.tts_backends import EspeakSynthesizer, HttpSynthesizer
from audio.effects import TurnEffects, check_effect
from bus.messages import AudioChunk, Say

MAX_CHUNK_BYTES = 256 * 1024
"""Audio per chunk at most (8 s at 16 kHz): a long clause, or a whole reply in the sequential flow, goes out
in several, so no single message is big enough to meet the bus's per-publisher byte budget or frame limit."""
FIRST_EFFECT_SLICE_S = 0.2
"""With a voice effect on, the reply's first audio goes out after this much has been effected (~1 ms)."""


@dataclass
class TtsSettings:
    backend: str = "piper"
    """piper, hibari, http, rocky_say, openai, espeak, silent or tone (the last two are for tests). A voice
    named in tts.voice brings its own backend, so this may stay piper (docs/voices.md)."""
    voice: str = ""
    """A voice by name (`rocky-relay voices` lists them: joe, heart, espeak, ...) or a path to a Piper .onnx
    (with its .onnx.json); empty means the backend's default (Piper: the embedded en_US-joe-medium)."""
    effect: str = "none"
    """none, or rocky: the voice layered in chords (a fifth above, an octave below, a light chorus)."""
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
    server_model: str = ""
    """openai backend: the `model` field (Kokoro-FastAPI: kokoro; OpenAI: tts-1)."""
    server_voice: str = ""
    """openai backend: the server's `voice` field (Kokoro-FastAPI: af_heart; OpenAI: alloy)."""
    response_format: str = "wav"
    """openai backend: wav or pcm (headerless 16-bit mono at 24 kHz)."""
    first_clause_words: int = 4
    """rocky_say backend: each clause goes in pieces cut at its commas, the first of at most this many words,
    so a slow server's first sound comes early (0: whole pieces)."""
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
    from models.voices import backend_for, find_voice

    backend = backend_for(settings.backend, settings.voice)
    if backend == "piper":
        entry = find_voice(settings.voice)  # a catalogue name for a Piper voice means the embedded one
        return PiperSynthesizer(replace(settings, voice="") if entry else settings)
    if backend in ("hibari", "rocky_say", "openai"):
        from actors.tts_servers import make_server_synthesizer

        return make_server_synthesizer(backend, settings)
    if backend == "http":
        return HttpSynthesizer(settings.url, settings.request, settings.text_field, settings.extra_fields,
                               settings.connect_timeout_s, settings.read_timeout_s)
    if backend == "espeak":
        return EspeakSynthesizer(settings.espeak_command, settings.espeak_voice, settings.espeak_wpm,
                                 settings.espeak_timeout_s)
    if backend == "silent":
        return SilentSynthesizer(settings.sample_rate)
    if backend == "tone":
        return ToneSynthesizer(settings.sample_rate)
    raise ValueError(f"tts.backend {settings.backend!r}: use piper, hibari, http, rocky_say, openai, espeak, "
                     "silent or tone")


class TtsActor(Actor):
    name: ClassVar[str] = "tts"

    def __init__(self, settings: TtsSettings, synthesizer: Synthesizer | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.synth = synthesizer
        self.chunk_index: dict[tuple[str, int], int] = {}
        check_effect(settings.effect)  # a misspelt effect fails the start, not every turn
        self.effects: TurnEffects | None = None
        self.voices: dict[str, Synthesizer] = {}
        """espeak-ng voices for replies in other languages, made when first needed."""

    def on_start(self) -> None:
        if self.synth is None:
            self.synth = make_synthesizer(self.settings)
        self.effects = TurnEffects(self.settings.effect, self.synth.sample_rate)

    def backend(self) -> str:
        return self.synth.description if self.synth else self.settings.backend

    @on(Say)
    def _speak(self, msg: Say, _payload: bytes) -> None:
        assert self.synth is not None
        key = (msg.session, msg.turn)
        if msg.index == 0:
            self.chunk_index[key] = 0
            if self.effects is not None:
                self.effects.end(key)  # a turn id seen again starts its effect afresh
            while len(self.chunk_index) > 16:  # turns whose last clause never came
                self.chunk_index.pop(next(iter(self.chunk_index)))
        synth = self._voice_for(msg.language)
        if msg.text.strip():
            pieces: list[bytes] = []
            for raw in synth.synthesize(msg.text):
                self.check_control()
                if self.is_cancelled(*key) or self.stopping:
                    self.chunk_index.pop(key, None)
                    return
                # Rocky's voice effect is tuned to his own voice and its rate; another language's is left as it is.
                for pcm in self._effected(key, raw) if synth is self.synth else (raw,):
                    if self.settings.streaming:
                        self._send(msg, pcm.tobytes(), last=False)
                    else:
                        pieces.append(pcm.tobytes())
            if pieces:
                self._send(msg, b"".join(pieces), last=False)
        if msg.last:
            self._send(msg, b"", last=True)
            self.chunk_index.pop(key, None)
            if self.effects is not None:
                self.effects.end(key)

    def _voice_for(self, language: str) -> Synthesizer:
        """The configured voice, or for a reply in another language espeak-ng's voice for it (the llm answers
        in a language only when `espeak_voice_for` finds one, so the fallback to ours is for stray input)."""
        assert self.synth is not None
        voice = espeak_voice_for(language, self.settings.espeak_command) if language else ""
        if not voice:
            return self.synth
        if voice not in self.voices:
            self.voices[voice] = EspeakSynthesizer(self.settings.espeak_command, voice, self.settings.espeak_wpm,
                                                   self.settings.espeak_timeout_s)
        return self.voices[voice]

    def _effected(self, key: tuple[str, int], pcm: np.ndarray) -> Iterator[np.ndarray]:
        """`pcm` through the voice effect; a turn's first piece in two, so its opening goes out after the
        effect has worked on a fifth of a second, not on the whole first sentence."""
        if self.effects is None or self.effects.name == "none":
            yield pcm
            return
        cut = 0 if self.effects.started(key) else int(FIRST_EFFECT_SLICE_S * self.effects.sample_rate)
        for part in (pcm[:cut], pcm[cut:]) if 0 < cut < len(pcm) else (pcm,):
            yield self.effects.apply(key, part)

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
                                sample_rate=self._voice_for(say.language).sample_rate, last=last), pcm)
