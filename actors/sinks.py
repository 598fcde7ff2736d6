"""Where the player's audio goes: a real sound device (PortAudio) or a WAV file.

A sink is fed one reply at a time (`begin`, `write`..., `end`) and tells the
player when the first audio reached the device and when the last sample left.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audio.wav import WavSink
from bus.messages import now


def error_earcon(rate: int = 22050) -> tuple[np.ndarray, int]:
    """Two falling beeps: 'something went wrong', without words."""
    parts = []
    for freq in (520.0, 390.0):
        t = np.arange(int(0.12 * rate)) / rate
        parts += [0.25 * np.sin(2 * np.pi * freq * t), np.zeros(int(0.04 * rate))]
    return (np.concatenate(parts) * 32767).astype(np.int16), rate


class Sink(Protocol):
    description: str

    def begin(self, session: str, turn: int, sample_rate: int) -> None: ...
    def write(self, pcm: bytes, sample_rate: int) -> None: ...
    def end(self) -> None: ...
    def first_audio_at(self) -> float | None: ...
    def done_at(self) -> float | None: ...
    def played_ms(self) -> float: ...
    def stop(self) -> float: ...
    def play_earcon(self, earcon: tuple[np.ndarray, int]) -> None: ...
    def close(self) -> None: ...


class WavFileSink:
    """Writes each reply to a WAV file as its chunks arrive (no device needed)."""

    def __init__(self, path_template: str) -> None:
        self.path_template = path_template
        self.description = f"wav {path_template}"
        self.file: WavSink | None = None
        self.first: float | None = None
        self.done: float | None = None
        self.samples = 0
        self.rate = 22050

    def begin(self, session: str, turn: int, sample_rate: int) -> None:
        self.close()
        # The session name comes off the bus: it must not pick a directory ("../x") or break the path.
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", session)[:64] or "_"
        path = Path(self.path_template.format(session=safe, turn=turn))
        self.file = WavSink(path, sample_rate)
        self.first, self.done, self.samples, self.rate = None, None, 0, sample_rate

    def write(self, pcm: bytes, sample_rate: int) -> None:
        if self.file is None:
            return
        self.file.write(pcm)
        self.samples += len(pcm) // 2
        if self.first is None and pcm:
            self.first = now()

    def end(self) -> None:
        self.close()
        self.done = now()

    def first_audio_at(self) -> float | None:
        return self.first

    def done_at(self) -> float | None:
        return self.done

    def played_ms(self) -> float:
        return 1000.0 * self.samples / self.rate

    def stop(self) -> float:
        self.close()
        return now()

    def play_earcon(self, earcon: tuple[np.ndarray, int]) -> None:
        """The earcon goes to its own file (turn 'error-<ms>'), so a test can hear that it sounded."""
        pcm, rate = earcon
        name = self.path_template.format(session="error", turn=f"error-{int(now() * 1000)}")
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        sink = WavSink(Path(name), rate)
        sink.write(pcm.tobytes())
        sink.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class SoundDeviceSink:
    """Plays through PortAudio. The stream stays open between replies so a reply starts at once."""

    def __init__(self, device: str, block_ms: float) -> None:
        try:
            import sounddevice
        except OSError as exc:  # the Python package is there but the PortAudio library is not
            raise RuntimeError("sounddevice needs PortAudio: apt-get install libportaudio2 "
                               "(or use --output FILE.wav)") from exc
        self.sd: Any = sounddevice
        self.device: str | int | None = int(device) if device.isdigit() else (device or None)
        self.block_ms = block_ms
        self.description = f"sounddevice {device or 'default'}"
        self.stream: Any = None
        self.rate = 0
        self.lock = threading.Lock()
        self.buffer = bytearray()
        self.ended = False
        self.first: float | None = None
        self.done: float | None = None
        self.samples_out = 0
        self.stop_asked = False
        self.silenced = threading.Event()

    def _ensure_stream(self, rate: int) -> None:
        if self.stream is not None and self.rate == rate:
            return
        if self.stream is not None:
            self.stream.close()
        self.rate = rate
        self.stream = self.sd.RawOutputStream(
            samplerate=rate, channels=1, dtype="int16", device=self.device,
            blocksize=int(rate * self.block_ms / 1000), callback=self._callback, latency="low")
        self.stream.start()

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        want = frames * 2
        with self.lock:
            if self.stop_asked:  # the buffer was cleared: this block is the first silent one
                self.stop_asked = False
                self.silenced.set()
            take = bytes(self.buffer[:want])
            del self.buffer[:want]
            if take and self.first is None:
                self.first = now()
            self.samples_out += len(take) // 2
            if self.ended and not self.buffer and self.done is None:
                # The last samples are in this block: it is heard one device latency later.
                self.done = now() + float(getattr(self.stream, "latency", 0.0) or 0.0)
        outdata[: len(take)] = take
        outdata[len(take):] = b"\x00" * (want - len(take))

    def begin(self, session: str, turn: int, sample_rate: int) -> None:
        with self.lock:
            self.buffer.clear()
            self.ended, self.first, self.done, self.samples_out = False, None, None, 0
        self._ensure_stream(sample_rate)

    def write(self, pcm: bytes, sample_rate: int) -> None:
        self._ensure_stream(sample_rate)
        with self.lock:
            self.buffer += pcm

    def end(self) -> None:
        with self.lock:
            self.ended = True

    def first_audio_at(self) -> float | None:
        return self.first

    def done_at(self) -> float | None:
        return self.done

    def played_ms(self) -> float:
        return 1000.0 * self.samples_out / self.rate if self.rate else 0.0

    def stop(self) -> float:
        """Drop everything queued; returns when the callback has started playing silence."""
        with self.lock:
            self.buffer.clear()
            self.ended = True
            self.silenced.clear()
            self.stop_asked = self.stream is not None
        if self.stream is not None:
            self.silenced.wait(timeout=4 * self.block_ms / 1000)  # one block, with margin
        with self.lock:
            self.done = now()
        return self.done

    def play_earcon(self, earcon: tuple[np.ndarray, int]) -> None:
        pcm, rate = earcon
        self.begin("", 0, rate)
        self.write(pcm.tobytes(), rate)
        self.end()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
