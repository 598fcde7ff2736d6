"""A real audio stack: PulseAudio null sinks, PortAudio devices, every actor a real process.

The test plays a spoken question into `mic_sink`, whose monitor is the mic
actor's input device; the player plays Rocky's reply into `relay_sink`; the
`audible` probe records `relay_sink.monitor` and reports the first reply sample
that reached the sink, so the record carries the true first-audible time
beside the player's "handed to the device" time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.audible import SampleRing, find_onset
from audio.wav import is_silent
from bus.handshake import wait_for_actors
from bus.messages import AudioFrame
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver
from tests.audio_stack import AudioStack, private_pulseaudio

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "launch" / "samples" / "prompt-3s.wav"
TURNS = int(os.environ.get("RR_AUDIO_TURNS", "3"))
"""Push-to-talk turns in one run (each about 10 s); raise it to measure the hidden latency on more turns."""
RELEASE_AFTER_S = 0.5
"""The button goes up this long after the question's last sample reached the sink (as in the bench)."""
AUDIBLE_BEFORE_STARTED_S = 0.010
"""How far the probe's onset may fall before the player's `started` stamp (two clocks, one host)."""


# --- the onset finder and the sample clock, on synthetic audio ------------------------------------------


def tone(n: int, amplitude: float = 0.3, rate: int = 16000) -> np.ndarray:
    return (amplitude * 32767 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.int16)


def test_onset_is_the_first_sample_of_a_soft_attack_not_an_earlier_click() -> None:
    audio = np.zeros(16000, dtype=np.int16)
    audio[2000] = 600  # an isolated click (under the block level, over the sample threshold), then quiet
    ramp = np.linspace(0.0, 1.0, 800)  # 50 ms fade-in: the first samples are far below the block threshold
    audio[8003:12003] = (tone(4000) * np.concatenate([ramp, np.ones(3200)])).astype(np.int16)
    onset = find_onset(audio, floor_samples=1600, block=160, level=32768 * 10 ** (-50 / 20), above_floor=4.0)
    assert onset is not None and 8003 <= onset <= 8010


def test_onset_needs_sound_above_the_noise_floor() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000) * 300).astype(np.int16)  # about -40 dBFS, over the absolute level
    assert find_onset(noise, floor_samples=4800, block=160, level=103.6, above_floor=4.0) is None
    loud = noise.copy()
    loud[9600:] += tone(6400)
    onset = find_onset(loud, floor_samples=4800, block=160, level=103.6, above_floor=4.0)
    assert onset is not None and abs(onset - 9600) <= 160


def test_sample_clock_takes_the_tightest_arrival_and_survives_wraparound() -> None:
    ring = SampleRing(rate=1000, history_s=1.0)
    for i in range(30):  # 100 ms blocks; every other one arrives 20 ms late (bursty delivery)
        ring.write(np.full(100, i, dtype=np.int16), arrival=100.0 + 0.1 * (i + 1) + (0.02 if i % 2 else 0.0))
    snap = ring.snapshot(102.5)
    assert snap is not None
    t0, first, audio = snap
    assert t0 == pytest.approx(100.0)  # the on-time blocks anchor the clock, the late ones do not shift it
    assert first == 2500 and audio[0] == 25 and len(audio) == 500
    t0, first, audio = ring.snapshot(0.0) or (0.0, 0, np.zeros(0))
    assert first == 2000 and len(audio) == 1000 and audio[0] == 20  # older audio is gone, not wrong


# --- the whole system on PulseAudio ------------------------------------------------------------------------


@dataclass
class Stack:
    audio: AudioStack
    driver: TurnDriver
    folder: Path


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="rr-audio-"))
    overrides = [f"bus.pub=ipc://{folder}/pub", f"bus.sub=ipc://{folder}/sub",
                 "mic.backend=sounddevice", "mic.device=mic_in",
                 "player.backend=sounddevice", "player.device=relay_out",
                 f"logger.path={folder}/turns.jsonl", "audible.device=relay_monitor"]
    config = load_config(None, overrides)
    actors = [*config.sets["local"], "audible"]
    try:
        with private_pulseaudio() as audio, pytest.MonkeyPatch.context() as env:
            for key, value in audio.env.items():  # every actor process inherits it from here
                env.setenv(key, value)
            supervisor = Supervisor(config, actors, log_dir=folder / "actors")
            with supervisor:
                supervisor.start(timeout_s=180)
                driver = TurnDriver(bus_address(config))
                try:
                    wait_for_actors(driver.client, {"audible"}, timeout_s=30)
                    yield Stack(audio, driver, folder)
                finally:
                    driver.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def next_frame(driver: TurnDriver, turn: int, timeout_s: float) -> AudioFrame:
    """The turn's next mic frame as it arrives."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Through the driver's own receive: the server heartbeats read here must still feed its link watch,
        # or `wait_record` would take the seconds spent speaking for a lost server.
        env = driver.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, AudioFrame) and env.msg.turn == turn:
            return env.msg
    raise TimeoutError(f"turn {turn}: no mic frame for {timeout_s:g} s")


def push_to_talk_turn(stack: Stack) -> tuple[dict[str, Any], np.ndarray, float]:
    """Press, speak the prompt into the mic sink, release 0.5 s after it ends; the record, the sink's audio and
    how long the mic took from the press to its first frame."""
    heard = stack.folder / f"relay-{time.monotonic_ns()}.raw"
    recorder = stack.audio.start_recording("relay_sink.monitor", heard)
    driver = stack.driver
    turn = driver.button.press()
    pressed = time.time()
    mic_open_s = next_frame(driver, turn, timeout_s=15).ts - pressed  # speaking earlier would be lost
    stack.audio.play(PROMPT, "mic_sink")
    release_at = time.time() + RELEASE_AFTER_S
    while next_frame(driver, turn, timeout_s=5).ts < release_at:  # 0.5 s of audio after the question
        pass
    driver.button.release()
    record = driver.wait_record(turn, timeout_s=120)
    return record, stack.audio.stop_recording(recorder, heard), mic_open_s


@pytest.mark.models
def test_push_to_talk_turns_are_heard_from_the_sink(stack: Stack) -> None:
    rows: list[str] = []
    gaps_ms: list[float] = []
    for _ in range(TURNS):
        record, sink_audio, mic_open_s = push_to_talk_turn(stack)
        assert record["status"] == "ok", (record["error"], record)
        assert "planet" in record["text_in"].lower(), record["text_in"]
        assert record["first_audible_at"] is not None, f"the probe heard nothing: {record}"
        assert record["release_to_first_audible_ms"] is not None
        gap_ms = 1000 * (record["first_audible_at"] - record["first_audio_at"])
        assert gap_ms >= -1000 * AUDIBLE_BEFORE_STARTED_S, record
        assert len(sink_audio) > 0.3 * 16000 and not is_silent(sink_audio), "nothing reached relay_sink"
        gaps_ms.append(gap_ms)
        rows.append(f"turn {len(rows) + 1}: mic open {1000 * mic_open_s:6.0f} ms  "
                    f"release->first audio {record['release_to_first_audio_ms']:7.1f} ms  "
                    f"release->first audible {record['release_to_first_audible_ms']:7.1f} ms  "
                    f"hidden output latency {gap_ms:6.1f} ms  ("
                    + ", ".join(f"{k} {record[k]}" for k in ("stt_ms", "llm_first_token_ms", "persona_ms",
                                                             "tts_first_chunk_ms")) + ")")
    print("\n" + "\n".join(rows) + f"\nmedian hidden output latency {statistics.median(gaps_ms):.1f} ms")
    written = [json.loads(line) for line in (stack.folder / "turns.jsonl").read_text().splitlines()]
    assert len(written) == TURNS and all(r["first_audible_at"] is not None for r in written)  # in the JSONL too
