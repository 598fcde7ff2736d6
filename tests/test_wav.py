"""Tests for audio.wav: decoding, resampling, refusal messages and writing."""

from __future__ import annotations

import struct
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from audio.wav import (
    TARGET_RATE,
    WavError,
    WavSink,
    duration_s,
    is_silent,
    load_pcm16_mono,
    read_wav,
    resample,
    write_wav,
)


def sine(rate: int, seconds: float = 0.5, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def write_raw(path: Path, frames: bytes, rate: int, width: int = 2, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def peak_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[np.argmax(spectrum)])


def test_16k_mono_round_trip_is_exact(tmp_path: Path) -> None:
    pcm = sine(16000)
    pcm[:4] = [32767, -32768, 1, -1]
    path = tmp_path / "nested" / "dir" / "a.wav"
    write_wav(path, pcm, 16000)
    out = load_pcm16_mono(path)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, pcm)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_resampled_sine_keeps_length_and_frequency(tmp_path: Path, rate: int) -> None:
    pcm = sine(rate, seconds=1.0)
    path = write_raw(tmp_path / f"s{rate}.wav", pcm.tobytes(), rate)
    out = load_pcm16_mono(path)
    assert len(out) == round(len(pcm) * TARGET_RATE / rate)
    assert abs(peak_hz(out, TARGET_RATE) - 1000.0) <= 20.0
    # Amplitude survives: neither the low-pass nor interpolation should eat the tone.
    assert 0.4 * 32767 < np.abs(out[100:-100]).max() <= 0.55 * 32767


def test_downsampling_suppresses_aliasing() -> None:
    # 10 kHz is above the 8 kHz Nyquist of 16 kHz; unfiltered it would fold to 6 kHz.
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32)
    out = resample(tone, 48000, 16000)
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 0.01


def test_stereo_identical_channels_equal_mono(tmp_path: Path) -> None:
    mono = sine(16000)
    stereo = np.column_stack([mono, mono]).ravel()
    path = write_raw(tmp_path / "st.wav", stereo.tobytes(), 16000, channels=2)
    np.testing.assert_array_equal(load_pcm16_mono(path), mono)


def test_stereo_opposite_channels_cancel(tmp_path: Path) -> None:
    left = sine(16000)
    stereo = np.column_stack([left, -left]).ravel()
    path = write_raw(tmp_path / "anti.wav", stereo.tobytes(), 16000, channels=2)
    out = load_pcm16_mono(path)
    assert np.abs(out).max() <= 1
    assert is_silent(out)


def test_24_bit_decodes(tmp_path: Path) -> None:
    values = [0, 1, -1, 8388607, -8388608, 4194304, -4194304]
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    audio, rate = read_wav(write_raw(tmp_path / "24.wav", raw, 16000, width=3))
    assert rate == 16000
    assert audio.dtype == np.float32
    np.testing.assert_allclose(audio, np.array(values) / 8388608.0, atol=1e-7)
    np.testing.assert_array_equal(
        load_pcm16_mono(tmp_path / "24.wav"), [0, 0, 0, 32767, -32768, 16384, -16384]
    )


def test_8_bit_decodes(tmp_path: Path) -> None:
    raw = bytes([0, 64, 128, 192, 255])
    audio, _ = read_wav(write_raw(tmp_path / "8.wav", raw, 8000, width=1))
    np.testing.assert_allclose(audio, [-1.0, -0.5, 0.0, 0.5, 127 / 128])


def fmt_wav(path: Path, tag: int, channels: int, rate: int, width: int, bits: int, data: bytes,
            extra: bytes = b"") -> Path:
    """A WAV built by hand, for formats `wave` cannot write (float, extensible, compressed)."""
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * width, channels * width, bits) + extra
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def float32_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    return fmt_wav(path, 3, 1, rate, 4, 32, samples.astype("<f4").tobytes())


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    (tmp_path / "random.wav").write_bytes(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
    (tmp_path / "notes.txt").write_text("hello, this is not audio\n" * 10)
    (tmp_path / "adir.wav").mkdir()
    return {
        "empty": (write_raw(tmp_path / "empty.wav", b"", 16000), "no audio frames"),
        "random": (tmp_path / "random.wav", "not a WAV file"),
        "text": (tmp_path / "notes.txt", "not a WAV file"),
        "missing": (tmp_path / "missing.wav", "file not found"),
        "directory": (tmp_path / "adir.wav", "directory"),
        "float_nan": (float32_wav(tmp_path / "nan.wav", np.array([0.1, np.nan], np.float32)), "NaN"),
        "low_rate": (write_raw(tmp_path / "slow.wav", b"\0\0" * 10, 2000), "sample rate 2000"),
        "int64": (fmt_wav(tmp_path / "i64.wav", 1, 1, 16000, 8, 64, b"\0" * 80), "64-bit PCM"),
        "header_only": (tmp_path / "cut.wav", "no audio frames"),
        "mu_law": (fmt_wav(tmp_path / "ulaw.wav", 7, 1, 8000, 1, 8, b"\xff" * 800), "mu-law"),
    }


@pytest.mark.parametrize(
    "case",
    ["empty", "random", "text", "missing", "directory", "float_nan", "low_rate", "int64", "header_only", "mu_law"],
)
def test_bad_inputs_raise_wav_error_naming_file(tmp_path: Path, case: str) -> None:
    full = write_raw(tmp_path / "full.wav", sine(16000).tobytes(), 16000)
    (tmp_path / "cut.wav").write_bytes(full.read_bytes()[:44])  # header claims frames, none follow
    path, reason = bad_files(tmp_path)[case]
    with pytest.raises(WavError) as info:
        load_pcm16_mono(path)
    message = str(info.value)
    assert path.name in message
    assert reason in message
    assert isinstance(info.value, ValueError)


def test_float_wav_decodes_and_is_clipped_to_full_scale(tmp_path: Path) -> None:
    samples = np.array([0.0, 0.5, -0.25, 1.5, -2.0], dtype=np.float32)
    audio, rate = read_wav(float32_wav(tmp_path / "f.wav", samples))
    assert rate == 16000
    np.testing.assert_allclose(audio, [0.0, 0.5, -0.25, 1.0, -1.0])
    np.testing.assert_array_equal(load_pcm16_mono(tmp_path / "f.wav"), [0, 16384, -8192, 32767, -32768])


def test_truncated_data_chunk_uses_what_is_there(tmp_path: Path) -> None:
    pcm = sine(16000)
    full = write_raw(tmp_path / "full.wav", pcm.tobytes(), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 1000 + 1])  # odd byte: half a frame
    np.testing.assert_array_equal(load_pcm16_mono(cut), pcm[:1000])


def test_silence_detection(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    quiet = rng.integers(-3, 4, 16000).astype(np.int16)  # about -80 dBFS
    write_wav(tmp_path / "quiet.wav", quiet, 16000)
    assert is_silent(load_pcm16_mono(tmp_path / "quiet.wav"))
    assert is_silent(np.zeros(0, dtype=np.int16))
    assert is_silent(np.zeros(10, dtype=np.float32))
    assert not is_silent(sine(16000))
    assert not is_silent(sine(16000).astype(np.float32) / 32768)
    assert is_silent(sine(16000, amp=0.001))  # about -63 dBFS
    assert not is_silent(sine(16000, amp=0.001), threshold_dbfs=-70.0)


def test_full_scale_square_wave_does_not_wrap(tmp_path: Path) -> None:
    t = np.arange(44100)
    square = np.where((t // 50) % 2 == 0, 32767, -32768).astype(np.int16)
    path = write_raw(tmp_path / "square.wav", square.tobytes(), 44100)
    out = load_pcm16_mono(path)
    assert out.dtype == np.int16
    assert len(out) == round(44100 * 16000 / 44100)
    # Ringing overshoots past full scale; wraparound would flip those peaks negative.
    ref = resample(read_wav(path)[0], 44100, 16000)
    assert ref.max() > 1.0
    assert np.all(out[ref > 0.9] > 0) and np.all(out[ref < -0.9] < 0)
    assert out.max() == 32767 and out.min() == -32768


def test_wav_sink_writes_readable_file(tmp_path: Path) -> None:
    pcm = sine(16000)
    path = tmp_path / "out" / "rec.wav"
    with WavSink(path, 16000) as sink:
        for chunk in np.array_split(pcm, 7):
            sink.write(chunk.tobytes())
        assert sink.frames == len(pcm)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == len(pcm)
    np.testing.assert_array_equal(load_pcm16_mono(path), pcm)
    with pytest.raises(ValueError, match="closed"):
        sink.write(b"\0\0")
    sink.close()  # idempotent


def test_wav_sink_rejects_half_frames(tmp_path: Path) -> None:
    with WavSink(tmp_path / "x.wav", 16000) as sink, pytest.raises(ValueError, match="odd"):
        sink.write(b"\0\0\0")


def test_write_wav_rejects_non_int16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "f.wav", np.zeros(10, dtype=np.float32), 16000)


def test_resample_edges() -> None:
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    assert resample(np.zeros(0, dtype=np.float32), 48000, 16000).shape == (0,)
    short = resample(np.ones(5, dtype=np.float32), 48000, 16000)  # shorter than the kernel
    assert short.shape == (2,) and short.dtype == np.float32
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_duration() -> None:
    assert duration_s(np.zeros(8000, dtype=np.int16), 16000) == 0.5
    assert duration_s(np.zeros(0, dtype=np.int16), 16000) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    pcm=hnp.arrays(np.int16, st.integers(1, 3000)),
    rate=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
)
def test_any_int16_loads_with_expected_length(pcm: npt.NDArray[np.int16], rate: int) -> None:
    # tmp_path is function-scoped and would be shared across examples; use a fresh dir each time.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.wav"
        write_wav(path, pcm, rate)
        out = load_pcm16_mono(path)
    assert out.dtype == np.int16
    assert len(out) == round(len(pcm) * 16000 / rate)
    wide = out.astype(np.int64)  # one sample at 44.1/48 kHz rounds to an empty output
    assert np.all((wide >= -32768) & (wide <= 32767))
    if rate == 16000:
        np.testing.assert_array_equal(out, pcm)
