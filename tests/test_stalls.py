"""A stalled actor (SIGSTOP) ends the turn with an error naming it, instead of a silent two-minute hang.

A launched set with fast backends; the logger's `stage_timeout_s` is short so the test is quick. The victim
is frozen with SIGSTOP before a typed turn (`rocky-relay say --attach`, the real CLI) and thawed with SIGCONT
only once the CLI has returned, in `finally` whatever happens. The frozen process stops its libzmq I/O
thread too, so the proxy's heartbeats drop its connection (what it was sent meanwhile is lost) and it must
reconnect after the thaw; the next turn shows it did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.logger_deadlines import PIPELINE, waited_stage
from actors.timing import TurnTimeline
from bus.handshake import prove_path, wait_for_actors
from bus.messages import ButtonEvent, CaptureEnd, Interrupt, LlmDone, Say, Transcript
from bus.sockets import BusClient
from launch.config import Config, bus_address, load_config
from launch.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
STAGE_TIMEOUT_S = 3.0
CLI_GUARD_S = 120.0
"""Only a guard against a hang of the test itself (the CLI's own wait is longer than the logger's)."""


@dataclass
class StallSet:
    supervisor: Supervisor
    config: Config
    folder: Path
    overrides: list[str]


@pytest.fixture(scope="module")
def stall_set() -> Iterator[StallSet]:
    folder = Path(tempfile.mkdtemp(prefix="rr-stall-"))
    overrides = [f"bus.pub=ipc://{folder}/pub", f"bus.sub=ipc://{folder}/sub", "llm.backend=echo",
                 "tts.backend=tone", "player.backend=wav", f"player.path={folder}/reply-{{turn}}.wav",
                 f"logger.path={folder}/turns.jsonl", f"logger.stage_timeout_s={STAGE_TIMEOUT_S}"]
    config = load_config(None, overrides)
    supervisor = Supervisor(config, config.sets["typed"], log_dir=folder / "actors")
    try:
        supervisor.start(timeout_s=60)
        yield StallSet(supervisor, config, folder, overrides)
    finally:
        supervisor.stop()
        shutil.rmtree(folder, ignore_errors=True)


def say(stall_set: StallSet, text: str) -> subprocess.CompletedProcess[str]:
    """`rocky-relay say --attach TEXT` against the set, as a person would run it."""
    sets = [arg for o in stall_set.overrides for arg in ("--set", o)]
    return subprocess.run([sys.executable, "-m", "launch.cli", *sets, "say", "--attach", "--json", text],
                          cwd=ROOT, capture_output=True, text=True, timeout=CLI_GUARD_S, check=False)


def printed_record(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.returncode, done.stdout, done.stderr)
    return dict(json.loads(lines[-1]))


@pytest.mark.parametrize("victim", ["tts", "player"])
def test_a_stopped_actor_ends_the_turn_with_its_stage_error(stall_set: StallSet, victim: str) -> None:
    supervisor = stall_set.supervisor
    pid = supervisor.pid(victim)
    assert pid is not None
    restarts = supervisor.restarts(victim)
    os.kill(pid, signal.SIGSTOP)
    try:
        stalled = say(stall_set, f"hello while {victim} is frozen")
    finally:
        os.kill(pid, signal.SIGCONT)
    record = printed_record(stalled)
    assert stalled.returncode == 1, stalled.stdout
    assert record["status"] == "error", record
    assert record["error"]["stage"] == victim, record
    assert f"{victim} made no progress" in record["error"]["reason"]
    assert f"error: [{victim}] {victim} made no progress" in stalled.stdout
    on_disk = [json.loads(line) for line in (stall_set.folder / "turns.jsonl").read_text().splitlines()]
    assert [(r["status"], r["error"]["stage"]) for r in on_disk if r["turn"] == record["turn"]] == [("error", victim)]

    # Thawed, it reconnects and answers; it was never restarted (a stall is not a crash), the next turn is ok.
    client = BusClient(bus_address(stall_set.config), name="stall-check")
    try:
        prove_path(client)
        wait_for_actors(client, {victim}, timeout_s=30, pids=supervisor.pid)
    finally:
        client.close()
    assert supervisor.restarts(victim) == restarts
    after = say(stall_set, "hello again")
    assert after.returncode == 0, (after.stdout, after.stderr)
    assert printed_record(after)["status"] == "ok"


# --- which stage a turn waits on (the logger's rule, without a bus) ----------------------------------


def test_the_waited_stage_follows_the_pipeline() -> None:
    timeline = TurnTimeline(session="s", turn=1)
    timeline.observe(ButtonEvent(session="s", turn=1, pressed=True), 1.0)
    assert waited_stage(timeline) is None  # the button is held: the person is still speaking
    timeline.observe(ButtonEvent(session="s", turn=1, pressed=False), 2.0)
    assert waited_stage(timeline) == "mic"
    timeline.observe(CaptureEnd(session="s", turn=1, frames=45, duration_ms=900.0), 2.1)
    assert waited_stage(timeline) == "stt"
    timeline.observe(Transcript(session="s", turn=1, text="hi", source="speech"), 2.2)
    assert waited_stage(timeline) == "llm"
    timeline.observe(LlmDone(session="s", turn=1, text="hello", tokens=1), 2.5)
    assert waited_stage(timeline) == "persona"
    timeline.observe(Say(session="s", turn=1, text="hello", index=0, last=True), 2.6)
    assert waited_stage(timeline) == "tts"
    timeline.observe(Interrupt(session="s", turn=1), 2.7)
    assert waited_stage(timeline) == "player"  # interrupted: only the player's `stopped` is still due
    # The player ends a satellite's pipeline; the front doors that stand in for it (wyoming, web) follow it.
    assert PIPELINE[PIPELINE.index("tts") + 1] == "player" and set(PIPELINE[PIPELINE.index("player") + 1:]) <= {
        "wyoming", "web"}
