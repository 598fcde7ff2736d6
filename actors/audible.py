"""The audible probe: records what the speaker really plays and reports when a reply became audible.

It listens to an input device that hears the output (a PulseAudio sink's
monitor in tests and CI, a microphone next to a speaker in a lab). When the
player reports `started` for a turn (the moment audio was handed to the
device), the probe looks in its recording for the first block after that
moment whose level rises clearly above the noise floor, finds the onset sample
and publishes `Audible` with that sample's wall-clock time: the true first
audible moment, output buffering included. Opt-in: not in any default set.

Sample clock. Each block's samples existed before its callback ran, so for
the sample with absolute index n, `arrival - (n_end - n) / rate` is an upper
bound of its capture time. The probe anchors one clock for the whole stream,
`t0 = min(arrival_i - n_end_i / rate)` over recent blocks, and dates sample n
at `t0 + n / rate`: the block that arrived soonest after capture gives the
tightest bound. Why not the simpler ways: PulseAudio delivers in bursts (two
10 ms blocks at once every 20 ms here), so "arrival minus block duration" is
late by up to a fragment for the first block of a burst; and PortAudio's
`inputBufferAdcTime` through the ALSA pulse plugin was 720-730 ms away from
the stream's own clock on these machines, so it cannot be trusted. The result
still includes the monitor's own delivery delay (a few ms): an onset is never
dated before the sound reached the sink.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from actors.base import Actor, on
from bus.messages import Audible, PlayerEvent, now

ACTIVE_POLL_MS = 5.0
IDLE_POLL_MS = 200.0


@dataclass
class AudibleSettings:
    device: str = "pulse"
    """Input device that hears the output, e.g. an ALSA pcm on a sink's monitor; a name or an index."""
    sample_rate: int = 16000
    """Recording rate; the onset is found to 1/rate."""
    block_ms: float = 10.0
    """PortAudio block: a small block keeps the clock anchor tight."""
    history_s: float = 10.0
    """Recording kept in the ring: a `started` may arrive this late and still be matched."""
    level_db: float = -50.0
    """A block is sound when its RMS passes this (dBFS) ..."""
    above_floor_db: float = 12.0
    """... and this much over the noise floor measured just before `started`."""
    floor_ms: float = 300.0
    """How much recording before `started` measures the noise floor."""
    margin_ms: float = 20.0
    """Search starts this long before `started`, for the error of the two clocks."""
    timeout_s: float = 3.0
    """No onset this long after `started`: publish nothing, log a warning."""
    open_timeout_s: float = 10.0
    """Ready only once the device has delivered `floor_ms` of audio: opening a pulse stream takes ~1 s."""


class SampleRing:
    """A bounded recording with one sample clock; fed by the audio callback, read by the actor."""

    def __init__(self, rate: int, history_s: float, anchor_blocks: int = 1000) -> None:
        self.rate = rate
        self.buf = np.zeros(max(1, int(rate * history_s)), dtype=np.int16)
        self.total = 0
        """Samples written since the epoch began (absolute index of the next sample)."""
        self.offsets: deque[float] = deque(maxlen=anchor_blocks)
        """arrival - n_end / rate per recent block; their minimum anchors the clock (drift follows the window)."""
        self.lock = threading.Lock()
        self.overflows = 0
        self.writes = 0
        """Blocks written so far: the actor scans again only when it grew."""

    def write(self, pcm: np.ndarray, arrival: float, overflow: bool = False) -> None:
        with self.lock:
            if overflow:  # samples were lost: the old clock and history no longer line up
                self.overflows += 1
                self.total = 0
                self.offsets.clear()
            n = len(pcm)
            cap = len(self.buf)
            if n >= cap:
                pcm = pcm[-cap:]
                self.total += n - cap
                n = cap
            start = self.total % cap
            first = min(n, cap - start)
            self.buf[start:start + first] = pcm[:first]
            self.buf[:n - first] = pcm[first:]
            self.total += n
            self.offsets.append(arrival - self.total / self.rate)
            self.writes += 1

    def snapshot(self, t_from: float) -> tuple[float, int, np.ndarray] | None:
        """(clock anchor t0, absolute index of the first sample, samples) recorded from `t_from` on.

        Sample n was recorded at `t0 + n / rate`. None before any audio came in.
        """
        with self.lock:
            if not self.offsets:
                return None
            t0 = min(self.offsets)
            oldest = max(0, self.total - len(self.buf))
            first = min(self.total, max(oldest, math.ceil((t_from - t0) * self.rate)))
            idx = np.arange(first, self.total) % len(self.buf)
            return t0, first, self.buf[idx]


def find_onset(audio: np.ndarray, floor_samples: int, block: int, level: float, above_floor: float) -> int | None:
    """Index in `audio` of the reply's first sample, or None.

    `audio[:floor_samples]` is the quiet before `started`. The trigger is the first
    later block whose RMS passes both thresholds; the onset is the first sample over
    the noise peak (and over a quarter of `level`) in the run of non-quiet blocks that ends at the trigger, so a soft
    attack counts from its start while an isolated click before it does not.
    """
    samples = audio.astype(np.float64)
    floor = samples[:floor_samples]
    floor_rms = float(np.sqrt(np.mean(np.square(floor)))) if len(floor) else 0.0
    floor_peak = float(np.max(np.abs(floor))) if len(floor) else 0.0
    threshold = max(level, floor_rms * above_floor)
    sample_threshold = max(2.0 * floor_peak, level / 4.0, 1.0)
    n_blocks = (len(samples) - floor_samples) // block
    if n_blocks <= 0:
        return None
    body = samples[floor_samples:floor_samples + n_blocks * block].reshape(n_blocks, block)
    over = np.flatnonzero(np.sqrt(np.mean(np.square(body), axis=1)) > threshold)
    if not len(over):
        return None
    trigger = floor_samples + int(over[0]) * block
    loud = np.abs(samples) > sample_threshold
    run_start = trigger
    while run_start - block >= floor_samples and loud[run_start - block:run_start].any():
        run_start -= block
    hits = np.flatnonzero(loud[run_start:trigger + block])
    return run_start + int(hits[0]) if len(hits) else trigger


@dataclass
class _Waiting:
    started_at: float
    deadline: float


class AudibleActor(Actor):
    name: ClassVar[str] = "audible"

    def __init__(self, settings: AudibleSettings, stream_factory: Any = None) -> None:
        super().__init__()
        self.settings = settings
        self.stream_factory = stream_factory
        """Builds the input stream (tests may pass one); default: a sounddevice RawInputStream."""
        self.ring = SampleRing(settings.sample_rate, settings.history_s)
        self.block = max(1, int(settings.sample_rate * settings.block_ms / 1000))
        self.stream: Any = None
        self.waiting: dict[tuple[str, int], _Waiting] = {}
        self.scanned_writes = -1
        self.recording = threading.Event()

    def on_start(self) -> None:
        factory = self.stream_factory or self._sounddevice_stream
        self.stream = factory(self._callback)
        self.stream.start()
        # PortAudio's start returns before a pulse stream delivers (~1 s here): a reply played in that
        # window would be missed or dated late, so Ready waits for real audio with a quiet floor's worth.
        if not self.recording.wait(self.settings.open_timeout_s):
            raise RuntimeError(f"audible probe: {self.settings.device!r} delivered no audio in "
                               f"{self.settings.open_timeout_s:g} s")

    def _sounddevice_stream(self, callback: Any) -> Any:
        try:
            import sounddevice
        except OSError as exc:
            raise RuntimeError("the audible probe needs PortAudio: apt-get install libportaudio2") from exc
        dev = self.settings.device
        device: str | int | None = int(dev) if dev.isdigit() else (dev or None)
        return sounddevice.RawInputStream(samplerate=self.settings.sample_rate, channels=1, dtype="int16",
                                          blocksize=self.block, device=device, callback=callback, latency="low")

    def backend(self) -> str:
        return f"sounddevice {self.settings.device or 'default'} (probe)"

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        arrival = now()  # first thing: every later line only makes the bound looser
        pcm = np.frombuffer(bytes(indata), dtype=np.int16)
        self.ring.write(pcm, arrival, overflow=bool(getattr(status, "input_overflow", False)))
        if self.ring.total >= self.settings.sample_rate * self.settings.floor_ms / 1000:
            self.recording.set()

    @on(PlayerEvent)
    def _player(self, msg: PlayerEvent, _payload: bytes) -> None:
        if msg.state == "started":
            key = (msg.session, msg.turn)
            if key not in self.waiting:
                self.waiting[key] = _Waiting(started_at=msg.ts, deadline=msg.ts + self.settings.timeout_s)
                self.poll_ms = ACTIVE_POLL_MS
            self._scan()

    def on_idle(self) -> None:
        self._scan()

    def _scan(self) -> None:
        fresh = self.ring.writes != self.scanned_writes
        self.scanned_writes = self.ring.writes
        for key, pending in list(self.waiting.items()):
            heard_at = self._onset(pending.started_at) if fresh else None
            if heard_at is not None:
                del self.waiting[key]
                self.publish(Audible(session=key[0], turn=key[1], heard_at=heard_at, device=self.settings.device))
                self.log.info("audible", turn=key[1], after_started_ms=round(1000 * (heard_at - pending.started_at), 1))
            elif now() > pending.deadline:
                del self.waiting[key]
                self.log.warning("not_heard", turn=key[1], timeout_s=self.settings.timeout_s,
                                 device=self.settings.device, overflows=self.ring.overflows)
        if not self.waiting:
            self.poll_ms = IDLE_POLL_MS

    def _onset(self, started_at: float) -> float | None:
        s = self.settings
        search_from = started_at - s.margin_ms / 1000
        snap = self.ring.snapshot(search_from - s.floor_ms / 1000)
        if snap is None:
            return None
        t0, first, audio = snap
        floor_samples = max(0, min(len(audio), math.ceil((search_from - t0) * s.sample_rate) - first))
        level = 32768.0 * 10 ** (s.level_db / 20)
        onset = find_onset(audio, floor_samples, self.block, level, 10 ** (s.above_floor_db / 20))
        return None if onset is None else t0 + (first + onset) / s.sample_rate

    def on_stop(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
