"""Timers through a launched set of real actor processes: a timer rings as a turn of its own, spoken on the
session that set it and no other, with its record; one set before the tools actor is killed -9 still rings
after the supervisor restarts it. The test asks the tools actor as the llm would (echo model: no weights)."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bus.handshake import prove_path, wait_for_actors
from bus.messages import Say, ToolCall, ToolResult, TurnRecord
from bus.sockets import BusClient
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor

FAST = ["llm.backend=echo", "tts.backend=tone", "player.backend=wav"]
TURN = 1_700_000_000_000


@contextmanager
def launched(set_dir: Path) -> Iterator[tuple[Supervisor, BusClient]]:
    """The typed set running, and a client reading clauses, tool answers and records."""
    config = load_config(None, [*FAST, f"bus.pub=ipc://{set_dir}/pub", f"bus.sub=ipc://{set_dir}/sub",
                                f"player.path={set_dir}/r-{{turn}}.wav", f"logger.path={set_dir}/turns.jsonl",
                                f"tools.timers_path={set_dir}/timers.json"])
    with Supervisor(config, config.sets["typed"], log_dir=set_dir / "actors") as supervisor:
        supervisor.start(timeout_s=60)
        client = BusClient(bus_address(config), ("say", "tool.", "turn.record"), name="test")
        try:
            prove_path(client)
            yield supervisor, client
        finally:
            client.close()


def call(client: BusClient, session: str, call_id: int, name: str, **arguments: Any) -> ToolResult:
    client.publish(ToolCall(session=session, turn=TURN + call_id, call_id=call_id, name=name, arguments=arguments))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, ToolResult) and env.msg.call_id == call_id:
            return env.msg
    raise AssertionError(f"no answer to {name} within 20 s")


def rings(client: BusClient, count: int, timeout_s: float) -> tuple[list[Say], list[dict[str, Any]]]:
    """The ringing timers' clauses and records, until `count` records came."""
    says: list[Say] = []
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is None:
            continue
        if isinstance(env.msg, Say) and env.msg.turn > TURN + 1000:
            says.append(env.msg)
        elif isinstance(env.msg, TurnRecord) and env.msg.record["source"] == "timer":
            records.append(env.msg.record)
    assert len(records) == count, f"{len(records)} of {count} timers rang within {timeout_s:g} s: {says}"
    return says, records


def test_a_timer_rings_as_its_own_turn_on_the_session_that_set_it(set_dir: Path) -> None:
    with launched(set_dir) as (_supervisor, client):
        set_at = time.monotonic()
        tea = call(client, "kitchen", 1, "set_timer", seconds=3, label="tea")
        eggs = call(client, "garage", 2, "set_timer", seconds=5, label="eggs")
        assert tea.ok and tea.result == "tea timer set for 3 seconds" and eggs.ok, (tea, eggs)
        left = call(client, "kitchen", 3, "timer_left")
        assert left.ok and left.result.startswith("tea: ") and "eggs" not in left.result, left
        says, records = rings(client, 2, timeout_s=30)
        rang_after_s = time.monotonic() - set_at
    assert rang_after_s >= 5  # the second timer's time, not before
    by_session = {r["session"]: r for r in records}
    assert set(by_session) == {"kitchen", "garage"}
    for session, label in (("kitchen", "tea"), ("garage", "eggs")):
        record = by_session[session]
        assert record["status"] == "ok" and record["spoken_text"] == f"Ding ding! Your {label} timer is done."
        assert record["first_audio_at"] is not None and record["playback_finished_at"] is not None
        (rang,) = record["tools"]
        assert rang["by"] == "timers" and rang["args"]["label"] == label
    assert {(s.session, s.text) for s in says} == {("kitchen", "Ding ding! Your tea timer is done."),
                                                   ("garage", "Ding ding! Your eggs timer is done.")}
    assert stat.S_IMODE((set_dir / "timers.json").stat().st_mode) == 0o600


def test_cancel_stops_a_timer_from_ringing(set_dir: Path) -> None:
    with launched(set_dir) as (_supervisor, client):
        assert call(client, "kitchen", 1, "set_timer", seconds=2, label="pasta").ok
        assert call(client, "kitchen", 2, "set_timer", seconds=3).ok
        cancelled = call(client, "kitchen", 3, "cancel_timer", label="pasta")
        assert cancelled.result == "cancelled 1 timer"
        _says, records = rings(client, 1, timeout_s=20)
        assert call(client, "kitchen", 4, "timer_left").result == "there is no timer running"
    assert records[0]["spoken_text"] == "Ding ding! Your timer is done."


def test_a_timer_outlives_a_restart_of_the_actor_that_owns_it(set_dir: Path) -> None:
    with launched(set_dir) as (supervisor, client):
        assert call(client, "kitchen", 1, "set_timer", seconds=4, label="bread").ok
        killed = supervisor.pid("tools")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        ready = wait_for_actors(client, {"tools"}, timeout_s=30, pids=supervisor.pid)
        assert ready["tools"].pid != killed
        assert call(client, "kitchen", 2, "timer_left").result.startswith("bread: ")
        _says, records = rings(client, 1, timeout_s=30)
    assert supervisor.restarts("tools") == 1
    assert records[0]["session"] == "kitchen" and records[0]["spoken_text"] == "Ding ding! Your bread timer is done."
