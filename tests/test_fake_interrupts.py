"""Interrupts and errors for turns that never began: the player answers nothing, the logger writes nothing;
a real turn's interrupt or error still closes it."""

from __future__ import annotations

import time
from pathlib import Path

from actors.logger import LoggerActor, LoggerSettings
from actors.player import PlayerActor, PlayerSettings
from bus.codec import Envelope
from bus.messages import Interrupt, Ping, PlayerEvent, Ready, Transcript, TurnError, TurnRecord
from bus.sockets import BusAddress, BusClient
from tests.helpers import actor_on_bus


def until_answer(client: BusClient, nonce: int, timeout_s: float = 10.0) -> list[Envelope]:
    """What `client` hears until the actor answers ping `nonce`: it handled everything sent before it."""
    client.publish(Ping(nonce=nonce))
    heard: list[Envelope] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is None:
            continue
        if isinstance(env.msg, Ready) and env.msg.nonce == nonce:
            return heard
        heard.append(env)
    raise AssertionError(f"no answer to ping {nonce}; heard {[type(e.msg).__name__ for e in heard]}")


def test_the_player_answers_only_interrupts_of_turns_under_way(bus_address: BusAddress, tmp_path: Path) -> None:
    player = PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "{session}-{turn}.wav")))
    with actor_on_bus(player, bus_address, listen=("player", "ctl.ready")) as client:
        for turn in range(1, 201):  # anyone's interrupts for turns that do not exist
            client.publish(Interrupt(session="kitchen", turn=turn))
        assert not [e for e in until_answer(client, 1) if isinstance(e.msg, PlayerEvent)]
        client.publish(Transcript(session="kitchen", turn=500, text="hello", source="typed"))  # a real turn
        client.publish(Interrupt(session="kitchen", turn=500))
        events = [e.msg for e in until_answer(client, 2) if isinstance(e.msg, PlayerEvent)]
        assert [(e.turn, e.state, e.clauses_played) for e in events] == [(500, "stopped", 0)]
        client.publish(Interrupt(session="kitchen", turn=500))  # again: the turn is over now
        assert not [e for e in until_answer(client, 3) if isinstance(e.msg, PlayerEvent)]


def test_the_logger_writes_no_record_for_interrupts_of_turns_that_never_began(bus_address: BusAddress,
                                                                              tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    logger = LoggerActor(LoggerSettings(path=str(path)))
    with actor_on_bus(logger, bus_address, listen=("turn.record", "ctl.ready")) as client:
        for turn in range(1, 501):
            client.publish(Interrupt(session="kitchen", turn=turn))
            client.publish(PlayerEvent(session="kitchen", turn=turn, state="stopped"))
        assert not [e for e in until_answer(client, 1) if isinstance(e.msg, TurnRecord)]
        client.publish(Transcript(session="kitchen", turn=900, text="hello", source="typed"))
        client.publish(Interrupt(session="kitchen", turn=900))
        client.publish(PlayerEvent(session="kitchen", turn=900, state="stopped"))
        records = [e.msg.record for e in until_answer(client, 2) if isinstance(e.msg, TurnRecord)]
        assert [(r["turn"], r["status"]) for r in records] == [(900, "interrupted")]
    assert [line.count('"turn":900') for line in path.read_text().splitlines()] == [1]
    assert len(logger.turns) == 0


def test_the_logger_writes_no_record_for_errors_of_turns_that_never_began(bus_address: BusAddress,
                                                                          tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    logger = LoggerActor(LoggerSettings(path=str(path)))
    with actor_on_bus(logger, bus_address, listen=("turn.record", "ctl.ready")) as client:
        for turn in range(1, 501):  # anyone may publish a TurnError
            client.publish(TurnError(session="kitchen", turn=turn, stage="tts", reason="made up"))
        assert not [e for e in until_answer(client, 1) if isinstance(e.msg, TurnRecord)]
        client.publish(Transcript(session="kitchen", turn=900, text="hello", source="typed"))
        client.publish(TurnError(session="kitchen", turn=900, stage="llm", reason="a real failure"))
        records = [e.msg.record for e in until_answer(client, 2) if isinstance(e.msg, TurnRecord)]
        assert [(r["turn"], r["status"], r["error"]) for r in records] == [
            (900, "error", {"stage": "llm", "reason": "a real failure"})]
    assert [line.count('"turn":900') for line in path.read_text().splitlines()] == [1]
    assert len(logger.turns) == 0
