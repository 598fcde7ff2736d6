"""WAV file input/output for the microphone stage.

Everything here works on mono audio: the mic actor only needs a 16 kHz int16
stream, so any supported WAV is decoded, downmixed and resampled to that.
"""

from __future__ import annotations

import wave
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

TARGET_RATE = 16000
MIN_RATE = 4000
MAX_RATE = 192000

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


class WavError(ValueError):
    """A WAV file cannot be used; the message names the file and the reason."""


def _open_error(name: str, exc: Exception) -> WavError:
    reason = str(exc)
    if "unknown format: 3" in reason:
        return WavError(f"{name}: 32-bit float WAV is not supported; convert to 16-bit PCM")
    if "unknown format: 65534" in reason:
        # Python < 3.12 cannot parse WAVE_FORMAT_EXTENSIBLE headers at all, even for plain PCM.
        return WavError(
            f"{name}: WAVE_FORMAT_EXTENSIBLE header is not supported; re-save as plain 16-bit PCM"
        )
    if "unknown format" in reason:
        return WavError(f"{name}: compressed WAV ({reason}) not supported; convert to 16-bit PCM")
    if "RIFF" in reason or "WAVE" in reason:
        return WavError(f"{name}: not a WAV file ({reason}); give a PCM WAV")
    if isinstance(exc, EOFError):
        return WavError(f"{name}: not a WAV file (header is truncated); give a PCM WAV")
    return WavError(f"{name}: unreadable WAV file ({reason or type(exc).__name__}); give a PCM WAV")


def _decode(raw: bytes, width: int) -> npt.NDArray[np.float64]:
    if width == 1:
        # 8-bit WAV is the one unsigned PCM width, centred on 128.
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    # Sign-extend from bit 23: numpy has no 24-bit integer type.
    value = (value ^ 0x800000) - 0x800000
    return value.astype(np.float64) / 8388608.0


def read_wav(path: str | Path) -> tuple[Float32Array, int]:
    """Decode a PCM WAV (8/16/24-bit, any channels) to mono float32 in [-1, 1] and its rate."""
    p = Path(path)
    name = str(p)
    if p.is_dir():
        raise WavError(f"{name}: is a directory, not a WAV file")
    try:
        with wave.open(name, "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise WavError(f"{name}: file not found") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise _open_error(name, exc) from exc
    if width not in (1, 2, 3):
        raise WavError(f"{name}: {8 * width}-bit PCM is not supported; convert to 16-bit PCM")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(
            f"{name}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; resample it first"
        )
    # A truncated data chunk yields fewer bytes than the header claims; keep whole frames only.
    frame_bytes = width * channels
    usable = len(raw) - len(raw) % frame_bytes
    if usable == 0:
        raise WavError(f"{name}: has no audio frames")
    samples = _decode(raw[:usable], width).reshape(-1, channels)
    return samples.mean(axis=1).astype(np.float32), rate


def _lowpass_kernel(cutoff: float, ratio: float) -> npt.NDArray[np.float64]:
    # Longer filters for bigger ratios keep the transition band a fixed fraction of the new Nyquist.
    half = int(np.ceil(16 * ratio))
    n = np.arange(-half, half + 1, dtype=np.float64)
    kernel = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.blackman(2 * half + 1)
    # Unity DC gain so downsampling does not change loudness.
    kernel /= kernel.sum()
    return kernel


def resample(audio: npt.NDArray[np.floating], src_rate: int, dst_rate: int) -> Float32Array:
    """Resample mono float audio; output length is round(len * dst_rate / src_rate)."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample expects mono audio of shape (n,), got {x.shape}")
    if src_rate == dst_rate:
        return x.astype(np.float32)
    n_in = x.shape[0]
    n_out = round(n_in * dst_rate / src_rate)
    if n_in == 0 or n_out == 0:
        return np.zeros(n_out, dtype=np.float32)
    if dst_rate < src_rate:
        # Cut a little below the new Nyquist so the Blackman transition band is mostly
        # below it too; otherwise content near it folds back as audible aliasing.
        kernel = _lowpass_kernel(0.45 * dst_rate / src_rate, src_rate / dst_rate)
        half = kernel.shape[0] // 2
        # "full" then slice rather than mode="same": "same" returns max(len) samples, which
        # is wrong for clips shorter than the kernel.
        x = np.convolve(x, kernel, mode="full")[half : half + n_in]
    t = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    return np.interp(t, np.arange(n_in, dtype=np.float64), x).astype(np.float32)


def load_pcm16_mono(path: str | Path, rate: int = TARGET_RATE) -> Int16Array:
    """Read any supported WAV as mono int16 PCM at `rate` (what the mic actor feeds on)."""
    audio, src_rate = read_wav(path)
    resampled = resample(audio, src_rate, rate).astype(np.float64)
    # Scale by 32768 to invert the int16 decode exactly; the low-pass can overshoot
    # full scale (Gibbs ringing), hence the clip before narrowing.
    scaled = np.clip(np.round(resampled * 32768.0), -32768, 32767)
    return scaled.astype(np.int16)


def is_silent(pcm: npt.NDArray[np.generic], threshold_dbfs: float = -50.0) -> bool:
    """True when RMS (dBFS; int16 or float in [-1, 1]) is below the threshold."""
    if pcm.size == 0:
        return True
    full_scale = 32768.0 if np.issubdtype(pcm.dtype, np.integer) else 1.0
    x = pcm.astype(np.float64) / full_scale
    rms = float(np.sqrt(np.mean(x * x)))
    if rms == 0.0:
        return True
    return bool(20.0 * np.log10(rms) < threshold_dbfs)


def _check_pcm16(pcm: npt.NDArray[np.generic]) -> Int16Array:
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected mono int16 PCM of shape (n,), got {pcm.dtype} {pcm.shape}")
    return pcm.astype("<i2", copy=False)


def write_wav(path: str | Path, pcm: npt.NDArray[np.generic], rate: int) -> None:
    """Write mono int16 PCM as a 16-bit WAV, creating parent directories."""
    with WavSink(path, rate) as sink:
        sink.write(_check_pcm16(pcm).tobytes())


class WavSink:
    """Incremental mono 16-bit WAV writer; the header is patched as frames arrive."""

    def __init__(self, path: str | Path, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self.path = Path(path)
        self.rate = rate
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Held open across write() calls by design; close()/__exit__ release it.
        self._writer: wave.Wave_write | None = wave.open(str(self.path), "wb")  # noqa: SIM115
        self._writer.setnchannels(1)
        self._writer.setsampwidth(2)
        self._writer.setframerate(rate)

    def write(self, pcm_bytes: bytes) -> None:
        if self._writer is None:
            raise ValueError(f"{self.path}: WavSink is closed")
        if len(pcm_bytes) % 2:
            # A stray byte would shift every later sample by half a frame.
            raise ValueError(f"{self.path}: odd byte count {len(pcm_bytes)} for 16-bit PCM")
        self._writer.writeframes(pcm_bytes)
        self.frames += len(pcm_bytes) // 2

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def duration_s(pcm: npt.NDArray[np.generic], rate: int) -> float:
    """Length of `pcm` in seconds at `rate`."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    return len(pcm) / rate
