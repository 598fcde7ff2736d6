"""The rocky voice effect: chords of the voice, the same chunked as whole, through the tts actor, and still
understood by the real faster-whisper (the default recogniser)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from actors.llm_prompt import words_of
from actors.stt import SttSettings
from actors.stt_whisper import WhisperRecognizer
from actors.tts import (
    FIRST_EFFECT_SLICE_S,
    PiperSynthesizer,
    SilentSynthesizer,
    ToneSynthesizer,
    TtsActor,
    TtsSettings,
)
from audio.effects import ChordEffect, EffectError, make_effect, with_volume
from audio.wav import resample
from bus.codec import Envelope
from bus.messages import AudioChunk, Say
from tests.helpers import handled_directly

REPLY = "The ship is ready, my friend. We fly home together tomorrow morning."


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    return PiperSynthesizer(TtsSettings(threads=1))


@pytest.fixture(scope="module")
def spoken(piper: PiperSynthesizer) -> np.ndarray:
    return np.concatenate(list(piper.synthesize(REPLY)))


def chunked(effect_rate: int, pcm: np.ndarray, sizes: Iterator[int]) -> tuple[np.ndarray, list[int]]:
    """`pcm` through one effect state in pieces of the given sizes; the output and where the joins are."""
    effect = ChordEffect(effect_rate)
    out, joins, at = [], [], 0
    while at < len(pcm):
        size = next(sizes)
        out.append(effect.process(pcm[at: at + size]))
        at += size
        joins.append(at)
    return np.concatenate(out), joins[:-1]


def test_chunk_by_chunk_is_the_whole_buffer_and_the_joins_do_not_click(
        piper: PiperSynthesizer, spoken: np.ndarray) -> None:
    whole = ChordEffect(piper.sample_rate).process(spoken)
    rng = np.random.default_rng(7)
    pieces, joins = chunked(piper.sample_rate, spoken, iter(lambda: int(rng.integers(1, 5000)), None))
    assert len(pieces) == len(whole) == len(spoken)
    assert np.abs(pieces.astype(np.int32) - whole).max() <= 1
    steps = np.abs(np.diff(pieces.astype(np.int32)))
    assert len(joins) > 20
    # A click is a step at a join far beyond what the speech itself does from sample to sample.
    assert steps[np.array(joins) - 1].max() <= np.percentile(steps, 99.9)


def test_a_tone_comes_out_as_a_chord_a_fifth_above_and_an_octave_below() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    tone = (8000 * np.sin(2 * np.pi * 220.0 * t)).astype(np.int16)
    out = ChordEffect(rate).process(tone).astype(np.float64)[rate // 4:]  # past the shifters' start-up
    power = np.abs(np.fft.rfft(out * np.hanning(len(out)))) ** 2
    freqs = np.fft.rfftfreq(len(out), 1 / rate)

    def share(low: float, high: float) -> float:
        """Of the output's energy, the part between two frequencies (a shifter's sweep spreads a line
        over a few tens of hertz)."""
        return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())

    assert share(190, 250) > 0.6  # the voice itself still leads
    assert share(300, 360) > 0.03  # a fifth above
    assert share(80, 140) > 0.03  # an octave below
    assert share(410, 470) < 0.01 and share(700, 1500) < 0.01  # and not a smear over everything


def test_the_tts_actor_effects_a_turn_as_one_stream_and_sends_its_opening_first() -> None:
    settings = TtsSettings(backend="tone", sample_rate=16000, effect="rocky")
    synth = ToneSynthesizer(settings.sample_rate)
    actor = TtsActor(settings, synth)
    actor.on_start()
    clauses = ["hello there friend", "the ship is ready"]
    says = [Envelope(topic="say", msg=Say(turn=3, text=text, index=i, last=i == 1)) for i, text in enumerate(clauses)]
    chunks = [(m, p) for m, p in handled_directly(actor, says) if isinstance(m, AudioChunk)]
    raw = np.concatenate([pcm for text in clauses for pcm in synth.synthesize(text)])
    expected = ChordEffect(settings.sample_rate).process(raw)
    got = np.frombuffer(b"".join(p for _m, p in chunks), dtype=np.int16)
    assert np.array_equal(got, expected)  # the second clause carries on from the first: no seam
    assert len(chunks[0][1]) // 2 <= int(FIRST_EFFECT_SLICE_S * settings.sample_rate)
    assert [m.index for m, _ in chunks] == list(range(len(chunks))) and chunks[-1][0].last
    again = [(m, p) for m, p in handled_directly(actor, says[:1]) if isinstance(m, AudioChunk)]
    first_again = np.frombuffer(b"".join(p for _m, p in again), dtype=np.int16)
    assert np.array_equal(first_again, expected[: len(first_again)])  # a new turn starts the effect afresh


def test_a_long_first_piece_is_cut_so_the_opening_goes_out_early() -> None:
    settings = TtsSettings(backend="silent", sample_rate=16000, effect="rocky")
    actor = TtsActor(settings, SilentSynthesizer(settings.sample_rate))
    actor.on_start()
    say = Envelope(topic="say", msg=Say(turn=1, text="a clause of forty characters or so, long", index=0, last=True))
    sizes = [len(p) // 2 for m, p in handled_directly(actor, [say]) if isinstance(m, AudioChunk)]
    total = len(next(SilentSynthesizer(settings.sample_rate).synthesize("a clause of forty characters or so, long")))
    assert sizes == [int(FIRST_EFFECT_SLICE_S * settings.sample_rate), total - sizes[0], 0]


def test_an_unknown_effect_is_refused_by_name() -> None:
    with pytest.raises(EffectError, match=r"'robot'.*none or rocky"):
        TtsActor(TtsSettings(backend="tone", effect="robot"))
    with pytest.raises(EffectError, match="none or rocky"):
        make_effect("Rocky", 16000)


def test_volume_scales_and_clips_at_full_scale() -> None:
    pcm = np.array([1000, -1000, 20000, -20000], dtype=np.int16).tobytes()
    assert np.frombuffer(with_volume(pcm, 0.5), dtype=np.int16).tolist() == [500, -500, 10000, -10000]
    assert np.frombuffer(with_volume(pcm, 2.0), dtype=np.int16).tolist() == [2000, -2000, 32767, -32768]
    assert with_volume(pcm, 1.0) == pcm


def test_rocky_speech_is_still_understood_by_whisper(piper: PiperSynthesizer, spoken: np.ndarray) -> None:
    recognizer = WhisperRecognizer(SttSettings(threads=1))

    def heard(pcm: np.ndarray) -> list[str]:
        audio16k = resample(pcm.astype(np.float32) / 32768.0, piper.sample_rate, 16000)
        return words_of(recognizer.transcribe(audio16k))

    plain, rocky = heard(spoken), heard(ChordEffect(piper.sample_rate).process(spoken))
    said = words_of(REPLY)
    assert word_errors(said, plain) <= 1, f"plain Piper heard as {plain}"  # the reference
    # At most one word more lost to the chords than to Piper itself, out of eleven.
    assert word_errors(said, rocky) <= word_errors(said, plain) + 1, f"rocky heard as {rocky}, plain as {plain}"


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]
