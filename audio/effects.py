"""Voice effects applied to TTS output chunk by chunk: `rocky` makes any voice speak in chords.

In the novel Rocky's speech is musical notes, so the effect layers the voice with copies a fifth above and
an octave below, plus a lightly detuned chorus copy. Each copy comes from a delay-line pitch shifter: two
read taps sweep a short delay window at the speed that shifts the pitch, each faded out where its
delay jumps back, so the taps always sum to one. Everything is a function of the absolute sample number, and
a shifter keeps only its window of past input, so processing a reply chunk by chunk gives the same samples
as processing it whole: no clicks at the joins, and no look-ahead (it adds no latency, only compute).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

EffectName = Literal["none", "rocky"]
EFFECTS: tuple[EffectName, ...] = ("none", "rocky")
Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


class EffectError(ValueError):
    """An unknown effect name; the message lists the known ones."""


@dataclass(frozen=True)
class Voice:
    """One layer of the chord: a pitch ratio, its gain, and the delay window its shifter sweeps."""

    ratio: float
    gain: float
    window_ms: float


ROCKY_LAYERS = (
    Voice(ratio=1.0, gain=1.0, window_ms=0.0),  # the voice itself, untouched, carries the words
    Voice(ratio=1.5, gain=0.45, window_ms=40.0),  # a fifth above
    Voice(ratio=0.5, gain=0.4, window_ms=60.0),  # an octave below
    Voice(ratio=1.006, gain=0.3, window_ms=30.0),  # a slightly detuned copy: the light chorus
)
ROCKY_OUTPUT_GAIN = 0.62
"""Fixed (so a chunk's level never depends on another chunk): the layers' peaks rarely line up, and speech
near full scale is clipped rather than the whole reply made quieter."""


class StreamingEffect(Protocol):
    def process(self, pcm: Int16Array) -> Int16Array:
        """The next piece of the effected stream: as many samples as came in."""


class PitchShifter:
    """A delay-line pitch shifter over a stream of float32 samples, one chunk at a time."""

    def __init__(self, ratio: float, window_samples: int) -> None:
        self.ratio = ratio
        self.window = max(4, window_samples)
        self.rate = abs(1.0 - ratio) / self.window  # phase cycles per sample
        self.history = np.zeros(self.window + 2, dtype=np.float32)
        """The last input samples, the farthest the taps reach back."""
        self.position = 0
        """Absolute number of the next input sample."""

    def process(self, chunk: Float32Array) -> Float32Array:
        count = len(chunk)
        buffer = np.concatenate([self.history, chunk.astype(np.float32)])
        here = np.arange(len(self.history), len(buffer), dtype=np.float64)  # each new sample's place in `buffer`
        # The phase in float64 from the absolute sample number: the same value whatever the chunking.
        cycles = (self.position + np.arange(count, dtype=np.float64)) * self.rate
        out = np.zeros(count, dtype=np.float32)
        for offset in (0.0, 0.5):
            phase = np.mod(cycles + offset, 1.0)
            # Raising the pitch needs a shrinking delay, lowering it a growing one.
            at = here - 1.0 - self.window * ((1.0 - phase) if self.ratio > 1.0 else phase)
            low = at.astype(np.int64)  # `at` is never negative, so truncation is floor
            frac = (at - low).astype(np.float32)
            tap = buffer[low]
            tap += (buffer[low + 1] - tap) * frac
            # A triangle fade: zero where this tap's delay jumps back, and the two taps always sum to one.
            tap *= (1.0 - np.abs(2.0 * phase - 1.0)).astype(np.float32)
            out += tap
        self.history = buffer[-len(self.history):]
        self.position += len(chunk)
        return out


class ChordEffect:
    """The `rocky` effect for one reply at one sample rate; keep one per turn."""

    def __init__(self, sample_rate: int, layers: tuple[Voice, ...] = ROCKY_LAYERS,
                 output_gain: float = ROCKY_OUTPUT_GAIN) -> None:
        self.layers = [(layer.gain, None if layer.ratio == 1.0 else
                        PitchShifter(layer.ratio, int(sample_rate * layer.window_ms / 1000)))
                       for layer in layers]
        self.output_gain = output_gain

    def process(self, pcm: Int16Array) -> Int16Array:
        if not len(pcm):
            return pcm
        dry = pcm.astype(np.float32)
        mixed = np.zeros(len(pcm), dtype=np.float32)
        for gain, shifter in self.layers:
            mixed += gain * (dry if shifter is None else shifter.process(dry))
        return np.clip(np.round(mixed * self.output_gain), -32768, 32767).astype(np.int16)


class NoEffect:
    def process(self, pcm: Int16Array) -> Int16Array:
        return pcm


def check_effect(name: str) -> EffectName:
    """`name` as an effect name, or an EffectError that lists them."""
    for known in EFFECTS:
        if name == known:
            return known
    raise EffectError(f"tts.effect {name!r}: use {' or '.join(EFFECTS)}")


def make_effect(name: str, sample_rate: int) -> StreamingEffect:
    """A fresh effect state for one reply."""
    if check_effect(name) == "rocky":
        return ChordEffect(sample_rate)
    return NoEffect()


class TurnEffects:
    """One effect state per turn, so a reply's clauses flow on from each other and turns never mix."""

    MAX_TURNS = 16
    """Turns whose last clause never came are dropped, oldest first."""

    def __init__(self, name: str, sample_rate: int) -> None:
        self.name = check_effect(name)
        self.sample_rate = sample_rate
        self.states: dict[tuple[str, int], StreamingEffect] = {}

    def started(self, key: tuple[str, int]) -> bool:
        return key in self.states

    def apply(self, key: tuple[str, int], pcm: Int16Array) -> Int16Array:
        """The turn's next piece effected, carrying on from its earlier pieces."""
        if self.name == "none":
            return pcm
        if key not in self.states:
            self.states[key] = make_effect(self.name, self.sample_rate)
            while len(self.states) > self.MAX_TURNS:
                self.states.pop(next(iter(self.states)))
        return self.states[key].process(pcm)

    def end(self, key: tuple[str, int]) -> None:
        self.states.pop(key, None)


def semitones(ratio: float) -> float:
    """A pitch ratio in semitones (for the docs and the bench's labels)."""
    return 12.0 * math.log2(ratio)


MAX_VOLUME = 4.0


def check_volume(volume: float) -> float:
    if not 0.0 <= volume <= MAX_VOLUME:
        raise EffectError(f"player.volume {volume!r}: use 0 (silent) to {MAX_VOLUME:g}; 1 plays as synthesised")
    return volume


def with_volume(pcm: bytes, volume: float) -> bytes:
    """int16 PCM bytes scaled by `volume`, clipped at full scale (1 returns them untouched)."""
    if volume == 1.0 or not pcm:
        return pcm
    scaled = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * volume
    return np.clip(np.round(scaled), -32768, 32767).astype("<i2").tobytes()
