"""kill -9 of each actor (and of the proxy) in the middle of a turn, with the real models.

For every victim: the turn in flight ends with a record naming what died (no
hang), the launcher respawns it within 2 s, and the next spoken turn is ok.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audio.wav import is_silent, read_wav
from bus.codec import Envelope
from bus.handshake import wait_for_actors
from bus.messages import AudioFrame, LlmToken, Say, Transcript, TurnRecord
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "launch" / "samples" / "prompt-3s.wav"
pytestmark = pytest.mark.models


@dataclass
class Crashable:
    supervisor: Supervisor
    driver: TurnDriver
    folder: Path
    names: list[str]


@pytest.fixture(scope="module")
def system() -> Iterator[Crashable]:
    folder = Path(tempfile.mkdtemp(prefix="rr-crash-"))
    overrides = [f"bus.pub=ipc://{folder}/pub", f"bus.sub=ipc://{folder}/sub",
                 "mic.backend=wav", f"mic.path={PROMPT}", "mic.realtime=true",
                 "player.backend=wav", f"player.path={folder}/reply-{{turn}}.wav",
                 f"logger.path={folder}/turns.jsonl"]
    config = load_config(None, overrides)
    names = config.sets["local"]
    supervisor = Supervisor(config, names, log_dir=folder / "actors")
    driver = None
    try:
        supervisor.start(timeout_s=180)
        driver = TurnDriver(bus_address(config))
        for topic in ("llm.token", "say", "stt.partial"):
            driver.client.subscribe(topic)
        yield Crashable(supervisor, driver, folder, names)
    finally:
        if driver is not None:
            driver.close()
        supervisor.stop()


Trigger = Callable[[Envelope], bool]
TRIGGERS: dict[str, Trigger] = {
    "mic": lambda env: isinstance(env.msg, AudioFrame) and env.msg.seq == 25,  # half a second into speech
    "stt": lambda env: isinstance(env.msg, Transcript) and not env.msg.final,  # working on partials
    "llm": lambda env: isinstance(env.msg, LlmToken),
    # the persona is quick: killed at the transcript, it dies before the reply's first token reaches it
    "persona": lambda env: isinstance(env.msg, Transcript) and env.msg.final,
    "logger": lambda env: isinstance(env.msg, LlmToken),
    "proxy": lambda env: isinstance(env.msg, LlmToken),
    "tts": lambda env: isinstance(env.msg, Say),
    # a WAV sink finishes as soon as the last chunk is written: kill it before the first one comes
    "player": lambda env: isinstance(env.msg, Say),
}


def crash_turn(system: Crashable, victim: str, timeout_s: float = 90.0) -> tuple[dict[str, Any], float]:
    """A spoken turn during which `victim` is killed -9 at its trigger; the record and the kill time."""
    driver = system.driver
    turn = driver.button.press()
    pressed = time.monotonic()
    killed_at: float | None = None
    released = False
    deadline = pressed + timeout_s
    while time.monotonic() < deadline:
        # A user lets go when done speaking; with the mic dead, no end of source ever comes.
        if not released and time.monotonic() - pressed > 4.5:
            driver.button.release()
            released = True
        env = driver.client.recv(timeout_ms=50)
        if env is None or env.msg.turn != turn:
            continue
        if killed_at is None and TRIGGERS[victim](env):
            pid = system.supervisor.pid(victim)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
        if isinstance(env.msg, AudioFrame) and env.msg.source_end and not released:
            driver.button.release()
            released = True
        if isinstance(env.msg, TurnRecord):
            driver.button.turn_open = False
            assert killed_at is not None, f"the turn ended before {victim}'s trigger came"
            return env.msg.record, killed_at
    raise TimeoutError(f"turn {turn} hung after killing {victim}: no record in {timeout_s:.0f} s")


@pytest.mark.parametrize("victim", ["stt", "llm", "persona", "tts", "player", "mic", "logger", "proxy"])
def test_kill_9_mid_turn_is_survived(system: Crashable, victim: str) -> None:
    before = len(system.supervisor.restart_log)
    record, _killed_at = crash_turn(system, victim)

    if victim == "logger":  # the restarted logger finished the record from its journal
        assert record.get("logger_restarted") is True
        assert record["text_in"], "the recovered record lost the transcript seen before the kill"
    elif victim == "proxy" and record["status"] == "ok":
        pass  # every socket reconnected before the turn needed what was in flight: it finished, no hang
    else:
        assert record["status"] == "error", record
        assert record["error"]["stage"] == victim
        assert "restarted" in record["error"]["reason"]
    others = set(system.names) - {"proxy"}
    client = system.driver.client
    wait_for_actors(client, others if victim == "proxy" else {victim}, timeout_s=120)
    restarts = [r for r in system.supervisor.restart_log[before:] if r.name == victim]
    assert restarts, f"{victim} was not restarted"
    # Respawned at once or after the first, short backoff step: the supervisor's own schedule, which a loaded
    # machine cannot make fail the way a bound on the measured seconds did.
    assert system.supervisor.children[victim].quick_failures <= 1, "a backoff beyond the first step was used"

    if victim == "player":  # the restarted player sounded the error earcon (the logger resends the error)
        deadline = time.monotonic() + 15
        while not (earcons := list(system.folder.glob("reply-error-*.wav"))) and time.monotonic() < deadline:
            client.recv(timeout_ms=100)  # waits for bus traffic, never a bare sleep
        assert earcons, "no error earcon from the restarted player"
        assert not is_silent(read_wav(earcons[-1])[0])

    after = system.driver.spoken_turn(timeout_s=120)
    assert after["status"] == "ok", after
    assert "planet" in after["text_in"].lower()
    assert after["spoken_text"]


def test_records_on_disk_are_whole_lines(system: Crashable) -> None:
    """Runs after the kills (file order): every line of the record file, journal aside, is complete JSON."""
    import json

    lines = (system.folder / "turns.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    for line in lines:
        json.loads(line)
