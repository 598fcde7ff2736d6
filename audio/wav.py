"""WAV file input/output for the microphone stage.

Everything here works on mono audio: the mic actor only needs a 16 kHz int16
stream, so any supported WAV is decoded, downmixed and resampled to that. The
reader walks the RIFF chunks itself: Python 3.11's `wave` refuses float and
WAVE_FORMAT_EXTENSIBLE files, which many tools write for 24-bit audio.
"""

from __future__ import annotations

import os
import stat
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import numpy as np
import numpy.typing as npt

from bus.privacy import PRIVATE_MODE

TARGET_RATE = 16000
MIN_RATE = 4000
MAX_RATE = 192000
MAX_DATA_BYTES = 64 * 1024 * 1024
"""Audio bytes read at most (35 min of 16 kHz 16-bit mono, 4 min of 48 kHz 24-bit stereo): far past
the 60 s a turn keeps, and small enough that decoding to float64 cannot exhaust a Pi's memory."""
CLIPPED_WARN_FRACTION = 0.001
"""clipped_fraction() above this deserves a warning: speech at full scale is distorted."""

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


class WavError(ValueError):
    """A WAV file cannot be used; the message names the file and the reason."""


_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
"""Bytes 2-15 of every KSDATAFORMAT_SUBTYPE GUID; bytes 0-1 hold the plain format tag."""
_COMPRESSED = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
_UNKNOWN_SIZE = (0, 0xFFFFFFFF)
"""data sizes that streaming writers leave when they cannot seek back: read to the end instead."""


@dataclass(frozen=True)
class _Format:
    tag: int
    """_PCM or _FLOAT (an extensible header resolved to its sub-format)."""
    channels: int
    rate: int
    width: int
    """Bytes per sample container (a 24-bit sample may sit in 4)."""


def _read_chunks(f: BinaryIO, name: str) -> tuple[bytes, bytes]:
    """The fmt chunk body and the audio bytes, walking RIFF chunks (`wave` in 3.11 refuses extensible)."""
    head = f.read(12)
    if len(head) < 12:
        raise WavError(f"{name}: not a WAV file (header is truncated); give a PCM WAV")
    riff, _size, kind = struct.unpack("<4sI4s", head)
    if riff == b"RF64":
        raise WavError(f"{name}: RF64 (WAV over 4 GB) is not supported; give a shorter PCM WAV")
    if riff != b"RIFF" or kind != b"WAVE":
        raise WavError(f"{name}: not a WAV file (no RIFF/WAVE header); give a PCM WAV")
    fmt: bytes | None = None
    while len(chunk := f.read(8)) == 8:
        cid, size = struct.unpack("<4sI", chunk)
        if cid == b"fmt ":
            fmt = f.read(min(size, 256))
            f.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"{name}: not a WAV file (audio before its format chunk); give a PCM WAV")
            # A truncated file yields fewer bytes than the header claims; read_wav keeps whole frames.
            return fmt, f.read(MAX_DATA_BYTES + 1 if size in _UNKNOWN_SIZE else min(size, MAX_DATA_BYTES + 1))
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes
    if fmt is None:
        raise WavError(f"{name}: not a WAV file (no format chunk); give a PCM WAV")
    raise WavError(f"{name}: has no audio frames (no data chunk)")


def _parse_format(fmt: bytes, name: str) -> _Format:
    if len(fmt) < 16:
        raise WavError(f"{name}: not a WAV file (format chunk is truncated); give a PCM WAV")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise WavError(f"{name}: WAVE_FORMAT_EXTENSIBLE with an unknown sub-format; convert to 16-bit PCM")
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag not in (_PCM, _FLOAT):
        kind = _COMPRESSED.get(tag, f"format tag 0x{tag:04x}")
        raise WavError(f"{name}: compressed WAV ({kind}) is not supported; convert to 16-bit PCM")
    if channels == 0:
        raise WavError(f"{name}: header says 0 channels; not a usable WAV")
    if block_align % channels:
        raise WavError(f"{name}: block of {block_align} bytes does not fit {channels} channels; header is damaged")
    # block_align decides the layout; bits may name only the valid bits of a wider container.
    width = block_align // channels if block_align else (bits + 7) // 8
    if width not in ((1, 2, 3, 4) if tag == _PCM else (4, 8)):
        kind = "PCM" if tag == _PCM else "float"
        raise WavError(f"{name}: {8 * width}-bit {kind} is not supported; convert to 16-bit PCM")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(f"{name}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; resample it first")
    return _Format(tag=tag, channels=channels, rate=rate, width=width)


def _decode(raw: bytes, fmt: _Format, name: str) -> npt.NDArray[np.float64]:
    if fmt.tag == _FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if fmt.width == 4 else "<f8").astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise WavError(f"{name}: float WAV holds NaN or infinite samples; the file is damaged")
        # Float WAVs may exceed full scale; that is clipping, which clipped_fraction() reports.
        return np.clip(x, -1.0, 1.0)
    if fmt.width == 1:
        # 8-bit WAV is the one unsigned PCM width, centred on 128.
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if fmt.width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if fmt.width == 4:  # valid bits are left-justified, so a 24-in-32 container scales the same
        return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    # Sign-extend from bit 23: numpy has no 24-bit integer type.
    value = (value ^ 0x800000) - 0x800000
    return value.astype(np.float64) / 8388608.0


def read_wav(path: str | Path) -> tuple[Float32Array, int]:
    """Decode a WAV (8/16/24/32-bit PCM or 32/64-bit float, plain or extensible header,
    any channels) to mono float32 in [-1, 1] and its rate."""
    p = Path(path)
    name = str(p)
    try:
        # O_NONBLOCK: opening a FIFO must not wait forever for a writer; it is refused below.
        with os.fdopen(os.open(p, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise WavError(f"{name}: is a directory, not a WAV file")
            if not stat.S_ISREG(mode):
                raise WavError(f"{name}: not a regular file (a pipe or a device); give a WAV file")
            fmt_body, raw = _read_chunks(f, name)
    except FileNotFoundError:
        raise WavError(f"{name}: file not found") from None
    except OSError as exc:
        raise WavError(f"{name}: unreadable ({exc.strerror or exc}); give a readable PCM WAV") from exc
    fmt = _parse_format(fmt_body, name)
    if len(raw) > MAX_DATA_BYTES:
        raise WavError(f"{name}: more than {MAX_DATA_BYTES >> 20} MiB of audio; give a shorter recording")
    frame_bytes = fmt.width * fmt.channels
    usable = len(raw) - len(raw) % frame_bytes
    if usable == 0:
        raise WavError(f"{name}: has no audio frames")
    samples = _decode(raw[:usable], fmt, name).reshape(-1, fmt.channels)
    return samples.mean(axis=1).astype(np.float32), fmt.rate


def clipped_fraction(pcm: npt.NDArray[np.generic]) -> float:
    """Share of samples at full scale (int16, or float in [-1, 1]): above ~0.001 the input was clipped
    and recognition suffers, so callers warn; the audio is still used."""
    if pcm.size == 0:
        return 0.0
    limit = 32767 if np.issubdtype(pcm.dtype, np.integer) else 32767.0 / 32768.0
    return float(np.count_nonzero(np.abs(pcm.astype(np.float64)) >= limit)) / pcm.size


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
    return to_pcm16(resample(audio, src_rate, rate))


def to_pcm16(audio: npt.NDArray[np.floating]) -> Int16Array:
    """Float audio (full scale 1.0) as int16 PCM."""
    # Scale by 32768 to invert the int16 decode exactly; a low-pass can overshoot
    # full scale (Gibbs ringing), hence the clip before narrowing.
    scaled = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype(np.int16)


SILENCE_DBFS = -200.0
"""The level `rms_dbfs` gives digital silence (and no samples): below anything a microphone delivers."""


def rms_dbfs(pcm: npt.NDArray[np.generic]) -> float:
    """RMS level in dB below full scale (int16, or float in [-1, 1]); SILENCE_DBFS for zeros or nothing."""
    if pcm.size == 0:
        return SILENCE_DBFS
    full_scale = 32768.0 if np.issubdtype(pcm.dtype, np.integer) else 1.0
    x = pcm.astype(np.float64) / full_scale
    power = float(np.mean(x * x))
    return max(SILENCE_DBFS, 10.0 * float(np.log10(power))) if power > 0 else SILENCE_DBFS


def is_silent(pcm: npt.NDArray[np.generic], threshold_dbfs: float = -50.0) -> bool:
    """True when RMS (dBFS; int16 or float in [-1, 1]) is below the threshold."""
    return rms_dbfs(pcm) < threshold_dbfs


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
        # Private from the first byte (a reply is what someone said and heard), whatever the umask.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)  # an existing file keeps its mode through O_CREAT
        # Held open across write() calls by design; close()/__exit__ release both.
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._writer: wave.Wave_write | None = wave.open(self._file, "wb")  # noqa: SIM115
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
        try:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        finally:
            if self._file is not None:  # wave leaves a file object it was given open
                self._file.close()
                self._file = None

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
