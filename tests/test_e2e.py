"""End to end with the real embedded models, every actor its own process on a real bus.

One launched `local` set serves the module: the mic reads whatever WAV the
test wrote to its source path, the player writes each reply to a WAV.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from actors.timing import TIMING_FIELDS
from audio.wav import is_silent, resample, write_wav
from bus.tap import tap
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.models


@dataclass
class LiveSystem:
    supervisor: Supervisor
    driver: TurnDriver
    mic_path: Path
    replies: Path
    config_file: Path
    voice: object


def piper_voice() -> object:
    from piper import PiperVoice

    from models.registry import tts_voice_file

    return PiperVoice.load(tts_voice_file(""))


def speak(voice: object, text: str, rate: int = 16000) -> np.ndarray:
    """The question as Piper says it, at `rate`, with a little silence around it."""
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])  # type: ignore[attr-defined]
    audio = resample(audio.astype(np.float32), voice.config.sample_rate, rate)  # type: ignore[attr-defined]
    pad = np.zeros(rate // 5, dtype=np.float32)
    pcm: np.ndarray = (np.clip(np.concatenate([pad, audio, pad]), -1, 1) * 32767).astype(np.int16)
    return pcm


@pytest.fixture(scope="module")
def live() -> Iterator[LiveSystem]:
    folder = Path(tempfile.mkdtemp(prefix="rr-e2e-"))
    mic_path = folder / "question.wav"
    overrides = ["mic.backend=wav", f"mic.path={mic_path}", "mic.realtime=false",
                 "player.backend=wav", f"player.path={folder}/reply-{{turn}}.wav",
                 f"logger.path={folder}/turns.jsonl"]
    config_file = folder / "rocky-relay.toml"
    config_file.write_text(f'[bus]\npub = "ipc://{folder}/pub"\nsub = "ipc://{folder}/sub"\n')
    config = load_config(config_file, overrides)
    supervisor = Supervisor(config, config.sets["local"], log_dir=folder / "actors")
    driver = None
    try:
        supervisor.start(timeout_s=180)
        driver = TurnDriver(bus_address(config))
        yield LiveSystem(supervisor, driver, mic_path, folder, config_file, piper_voice())
    finally:
        if driver is not None:
            driver.close()
        supervisor.stop()
        shutil.rmtree(folder, ignore_errors=True)


def reply_audio(live: LiveSystem, turn: int) -> np.ndarray:
    with wave.open(str(live.replies / f"reply-{turn}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def test_spoken_question_gets_a_spoken_answer(live: LiveSystem) -> None:
    write_wav(live.mic_path, speak(live.voice, "How many legs does a spider have?"), 16000)
    record = live.driver.spoken_turn()
    assert record["status"] == "ok", record
    words = record["text_in"].lower()
    assert "spider" in words and "legs" in words
    assert record["text_out"].strip() and record["spoken_text"].strip()
    audio = reply_audio(live, record["turn"])
    assert len(audio) > 0.3 * 22050 and not is_silent(audio)
    missing = [k for k in TIMING_FIELDS if record[k] is None]
    assert not missing, f"timings missing: {missing}"
    assert record["backends"]["stt"].startswith("faster-whisper") and "gguf" in record["backends"]["llm"]


def test_typed_turn_through_the_bus(live: LiveSystem) -> None:
    record = live.driver.typed_turn("Hello Rocky, are you an engineer?")
    assert record["status"] == "ok" and record["source"] == "typed"
    assert record["text_out"].strip() and not is_silent(reply_audio(live, record["turn"]))
    assert record["release_to_first_audio_ms"] is not None and record["press_to_first_audio_ms"] is None


def test_say_command_and_tap_show_the_turn(live: LiveSystem) -> None:
    out = io.StringIO()
    tapper = threading.Thread(target=tap, args=(bus_address(load_config(live.config_file)),),
                              kwargs={"out": out, "timeout_s": 60.0, "count": 400}, daemon=True)
    tapper.start()
    result = subprocess.run(
        [sys.executable, "-m", "launch.cli", "--config", str(live.config_file), "say", "--attach",
         "What do you build?"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "rocky:" in result.stdout and "release_to_first_audio_ms" in result.stdout
    tapper.join(timeout=5)  # it may still be listening; what it printed so far is enough
    lines = out.getvalue()
    for topic in ("stt.final", "llm.token", "llm.done", "say", "audio.out", "player", "turn.record"):
        assert f" {topic} " in lines, f"tap did not show {topic}"
    assert "<pcm " in lines and "\\x" not in lines  # audio summarised, never dumped


def write_variant(live: LiveSystem, kind: str) -> None:
    path = live.mic_path
    if kind == "empty":
        write_wav(path, np.zeros(0, dtype=np.int16), 16000)
    elif kind == "not-wav":
        path.write_bytes(b"ID3\x03\x00 this is an mp3, honest" * 20)
    elif kind == "silent":
        write_wav(path, np.zeros(32000, dtype=np.int16), 16000)
    elif kind in ("8k", "48k"):
        rate = 8000 if kind == "8k" else 48000
        write_wav(path, speak(live.voice, "What is the color of the sky?", rate), rate)
    elif kind == "stereo":
        mono = speak(live.voice, "What is the color of the sky?", 16000)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(np.stack([mono, mono], axis=1).tobytes())


@pytest.mark.parametrize(("kind", "stage", "reason"), [
    ("empty", "mic", "no audio frames"),
    ("not-wav", "mic", "not a WAV"),
    ("silent", "stt", "no speech heard"),
])
def test_bad_input_wav_ends_the_turn_with_the_reason(live: LiveSystem, kind: str, stage: str, reason: str) -> None:
    write_variant(live, kind)
    record = live.driver.spoken_turn(max_speech_s=20)
    assert record["status"] == "error"
    assert record["error"]["stage"] == stage and reason in record["error"]["reason"]


@pytest.mark.parametrize("kind", ["8k", "48k", "stereo"])
def test_other_rates_and_stereo_are_converted(live: LiveSystem, kind: str) -> None:
    write_variant(live, kind)
    record = live.driver.spoken_turn()
    assert record["status"] == "ok", record
    assert "sky" in record["text_in"].lower()


def test_no_actor_died_of_bad_input(live: LiveSystem) -> None:
    """Runs after the bad inputs above (file order): nothing was restarted."""
    assert {name: live.supervisor.restarts(name) for name in live.supervisor.children} == dict.fromkeys(
        live.supervisor.children, 0)
