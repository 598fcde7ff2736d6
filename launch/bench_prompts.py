"""Spoken prompts for the bench: each question said by two different voices, released like a person would.

Piper (en_US-joe-medium, also Rocky's own voice) and espeak-ng (a formant synthesiser that sounds nothing
like it) say every question of the answer set. Each recording is trimmed to its first and last audible
sample, given a quarter second of quiet after the press (people start talking a moment after pressing),
then exactly `release_s` of quiet before the release: 0 (let go on the last word), 0.2 (what people do,
the headline) or 0.5 (a generous release). A little noise is mixed in throughout so the quiet is a room,
not digital silence, which no microphone ever delivers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio.wav import TARGET_RATE, Int16Array, resample, to_pcm16, write_wav

VOICES = ("piper", "espeak")
LEAD_IN_S = 0.25
NOISE_DBFS = -60.0
AUDIBLE = 0.01
"""Samples above this fraction of full scale count as speech when trimming."""


def trimmed(pcm: Int16Array) -> Int16Array:
    """The recording from its first to its last audible sample."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.float32)) > AUDIBLE * 32768)
    return pcm[loud[0]: loud[-1] + 1] if loud.size else pcm[:0]


def with_release(speech: Int16Array, release_s: float, seed: int = 0) -> Int16Array:
    """Quiet lead-in, the speech, `release_s` of quiet, all over a faint noise floor."""
    lead, tail = np.zeros(int(LEAD_IN_S * TARGET_RATE)), np.zeros(int(release_s * TARGET_RATE))
    audio = np.concatenate([lead, speech.astype(np.float64), tail])
    noise = np.random.default_rng(seed).normal(0.0, 32768 * 10 ** (NOISE_DBFS / 20), audio.size)
    return np.clip(audio + noise, -32768, 32767).astype(np.int16)


def speak_questions(questions: list[str], voice: str) -> list[Int16Array]:
    """Each question said by `voice`, at 16 kHz, trimmed to its audible part."""
    from actors.tts import TtsSettings, make_synthesizer

    synth = make_synthesizer(TtsSettings(backend=voice))
    rate = int(synth.sample_rate)
    out: list[Int16Array] = []
    for text in questions:
        pieces = list(synth.synthesize(text))
        pcm = np.concatenate(pieces).astype(np.int16) if pieces else np.zeros(0, dtype=np.int16)
        if rate != TARGET_RATE:
            pcm = to_pcm16(resample(pcm.astype(np.float32) / 32768.0, rate, TARGET_RATE))
        out.append(trimmed(pcm))
    return out


def write_prompts(questions: list[str], folder: Path,
                  releases: tuple[float, ...]) -> dict[tuple[str, float], list[Path]]:
    """WAVs for every voice and release: {(voice, release_s): [one path per question]}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[tuple[str, float], list[Path]] = {}
    for voice in VOICES:
        spoken = speak_questions(questions, voice)
        for release_s in releases:
            paths[(voice, release_s)] = []
            for i, speech in enumerate(spoken):
                path = folder / f"{voice}-{release_s:.1f}-{i:02d}.wav"
                write_wav(path, with_release(speech, release_s, seed=i), TARGET_RATE)
                paths[(voice, release_s)].append(path)
    return paths
