"""The mic: captures 16 kHz mono int16 frames of 20 ms while the button is held.

Subscribes to `button`; publishes `audio.in` frames and, at release, a
`CaptureEnd`. Frames go out from a publisher thread with its own socket, fed
by a queue, so the audio callback never blocks and frames and the capture end
leave in order. Sources: a sound device, or a WAV file (resampled to 16 kHz
mono; a bad file is refused with the reason and the turn ends).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import zmq

from actors.base import Actor, on
from audio.wav import CLIPPED_WARN_FRACTION, TARGET_RATE, WavError, clipped_fraction, load_pcm16_mono
from bus.codec import CodecError
from bus.handshake import prove_path
from bus.messages import AudioFrame, ButtonEvent, CaptureEnd, Message
from bus.sockets import BusAddress, BusClient

FRAME_SAMPLES = TARGET_RATE // 50  # 20 ms
Outgoing = tuple[Message, bytes] | None


@dataclass
class MicSettings:
    backend: str = "sounddevice"
    """sounddevice (a real input device) or wav (read `path` as if spoken at each press)."""
    device: str = ""
    """sounddevice input device name or index; empty means the system default."""
    path: str = ""
    """WAV backend: the file to play into the bus at each press."""
    realtime: bool = True
    """WAV backend: pace frames as a microphone would (False: as fast as possible)."""
    keep_open: bool = True
    """sounddevice: keep the input stream open between turns (frames still leave only while the button is
    held). Opening a stream at each press took 0.3-1.9 s on PulseAudio, and words said then were lost."""


class _Capture:
    """One turn's capture: counts frames and stops its source."""

    def __init__(self, press: ButtonEvent, out: queue.Queue[Outgoing]) -> None:
        self.press = press
        self.out = out
        self.seq = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.closer: Any = None

    def emit(self, pcm: bytes, source_end: bool = False) -> None:
        with self.lock:
            if self.stop_event.is_set():
                return
            frame = AudioFrame(session=self.press.session, turn=self.press.turn, seq=self.seq,
                               sample_rate=TARGET_RATE, source_end=source_end)
            self.seq += 1
        self.out.put((frame, pcm))

    def finish(self) -> CaptureEnd:
        with self.lock:
            self.stop_event.set()
        if self.closer is not None:
            self.closer()
        return CaptureEnd(session=self.press.session, turn=self.press.turn, frames=self.seq,
                          duration_ms=self.seq * 20.0)


class MicActor(Actor):
    name: ClassVar[str] = "mic"

    def __init__(self, settings: MicSettings, address: BusAddress | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.address = address
        self.out: queue.Queue[Outgoing] = queue.Queue()
        self.capture: _Capture | None = None
        self.sender: threading.Thread | None = None
        self.sender_ready = threading.Event()
        self.sender_error: str = ""
        self.stream: Any = None
        """The always-open input stream (sounddevice with keep_open)."""

    def run(self, address: BusAddress) -> None:
        self.address = address
        super().run(address)

    def on_start(self) -> None:
        if self.settings.backend not in ("sounddevice", "wav"):
            raise ValueError(f"mic.backend {self.settings.backend!r}: use sounddevice or wav")
        if self.settings.backend == "sounddevice":
            import sounddevice  # noqa: F401 - fail at start, naming PortAudio, not at the first press
            if self.settings.keep_open:
                self.stream = self._stream(self._on_block)
                self.stream.start()
        self.sender = threading.Thread(target=self._send_loop, name="mic-sender", daemon=True)
        self.sender.start()
        if not self.sender_ready.wait(15) or self.sender_error:
            raise RuntimeError(f"mic publisher could not reach the bus: {self.sender_error or 'timeout'}")

    def backend(self) -> str:
        if self.settings.backend == "wav":
            return f"wav {self.settings.path}"
        return f"sounddevice {self.settings.device or 'default'}"

    def _send_loop(self) -> None:
        assert self.address is not None
        client = BusClient(self.address, name="mic-sender")
        try:
            prove_path(client)
        except TimeoutError as exc:
            self.sender_error = str(exc)
            client.close()
            self.sender_ready.set()
            return
        self.sender_ready.set()
        try:
            while (item := self.out.get()) is not None:
                try:
                    client.publish(*item)
                except (CodecError, zmq.ZMQError) as exc:
                    # One frame that cannot go out must not end this thread: every later turn needs it.
                    self.log.error("frame_not_sent", reason=str(exc), turn=item[0].turn)
        finally:
            client.close()

    @on(ButtonEvent)
    def _button(self, msg: ButtonEvent, _payload: bytes) -> None:
        if msg.pressed:
            if self.capture is not None:
                self._release()
            self.capture = _Capture(msg, self.out)
            try:
                self._start_source(self.capture)
            except (WavError, OSError, RuntimeError) as exc:
                self.capture = None
                self.fail_turn(msg, f"microphone: {exc}")
        elif self.capture is not None and (self.capture.press.session, self.capture.press.turn) == (
                msg.session, msg.turn):
            self._release()

    def _release(self) -> None:
        assert self.capture is not None
        self.out.put((self.capture.finish(), b""))
        self.capture = None

    def _start_source(self, capture: _Capture) -> None:
        if self.settings.backend == "wav":
            samples = load_pcm16_mono(self.settings.path)
            clipped = clipped_fraction(samples)
            if clipped > CLIPPED_WARN_FRACTION:  # still used: clipped speech is often understood
                self.log.warning("input_clipped", path=self.settings.path, clipped_fraction=round(clipped, 4),
                                 turn=capture.press.turn)
            pcm = samples.tobytes()
            worker = threading.Thread(target=self._play_wav, args=(capture, pcm), daemon=True)
            worker.start()
        elif self.stream is None:
            self._open_device(capture)

    def _on_block(self, pcm: bytes) -> None:
        """Audio callback of the always-open stream: only a held button lets a block out."""
        capture = self.capture  # one read: the loop thread may swap it meanwhile
        if capture is not None:
            capture.emit(pcm)

    def _play_wav(self, capture: _Capture, pcm: bytes) -> None:
        step = FRAME_SAMPLES * 2
        started = time.monotonic()
        count = (len(pcm) + step - 1) // step
        for i in range(count):
            if capture.stop_event.is_set():
                return
            if self.settings.realtime:
                delay = started + (i + 1) * 0.020 - time.monotonic()  # a frame exists once spoken
                if delay > 0 and capture.stop_event.wait(delay):
                    return
            frame = pcm[i * step:(i + 1) * step].ljust(step, b"\x00")
            capture.emit(frame, source_end=i == count - 1)

    def _open_device(self, capture: _Capture) -> None:
        stream = self._stream(capture.emit)
        stream.start()
        capture.closer = stream.close

    def _stream(self, deliver: Any) -> Any:
        import sounddevice

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            deliver(bytes(indata))

        device = int(self.settings.device) if self.settings.device.isdigit() else (self.settings.device or None)
        return sounddevice.RawInputStream(samplerate=TARGET_RATE, channels=1, dtype="int16",
                                          blocksize=FRAME_SAMPLES, device=device, callback=callback)

    def on_stop(self) -> None:
        if self.capture is not None:
            self._release()
        if self.stream is not None:
            self.stream.close()
        self.out.put(None)
        if self.sender is not None:
            self.sender.join(timeout=2)
