"""Satellite machinery on one host: heartbeats, link loss, clock offsets, replicas, busy, session filter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actors.link import ClockOffsets, LinkWatch
from actors.llm import LlmActor
from actors.llm_settings import LlmSettings
from actors.logger import LoggerActor, LoggerSettings
from actors.player import PlayerActor, PlayerSettings
from bus.messages import (
    AudioChunk,
    ButtonEvent,
    CaptureEnd,
    Heartbeat,
    LlmDone,
    PlayerEvent,
    Say,
    Transcript,
    TurnError,
    TurnRecord,
)
from bus.sockets import BusAddress
from launch.config import ConfigError, expand_replicas, load_config
from tests.helpers import actor_on_bus, collect, of_type

TURN = 1_700_000_000_000


def test_link_watch_says_nothing_before_the_first_beat_then_loses_and_restores() -> None:
    watch = LinkWatch(timeout_s=3.0)
    assert not watch.poll(100.0)  # never armed: a bus without a server logger is not "lost"
    assert not watch.beat(100.0)
    assert not watch.poll(102.9)
    assert watch.poll(103.1) and not watch.up
    assert not watch.poll(104.0)  # reported once
    assert watch.beat(105.0) and watch.up


def test_clock_offsets_take_the_shortest_round_trip() -> None:
    clocks = ClockOffsets()
    # satellite 2.5 s ahead; beats with 10 ms and 200 ms round trips (the slow one skewed by queueing)
    clocks.add("pi", t0=100.000, t1=102.505, t3=100.010)
    clocks.add("pi", t0=101.000, t1=103.650, t3=101.200)
    offset, error = clocks.offset("pi") or (0.0, 0.0)
    assert offset == pytest.approx(2.5, abs=1e-6) and error == pytest.approx(0.005)
    assert clocks.correction("pi") == pytest.approx(2.5)
    clocks.add("same-host", t0=10.0, t1=10.0006, t3=10.001)  # noise around zero: no correction
    assert clocks.correction("same-host") == 0.0
    assert clocks.offset("unknown") is None


def test_replicas_expand_and_shard_each_session_to_exactly_one() -> None:
    config = load_config(None, ["server.replicas=llm=3,tts=2"])
    names = expand_replicas(config, ["proxy", "stt", "llm", "tts"])
    assert names == ["proxy", "stt", "llm-1", "llm-2", "llm-3", "tts-1", "tts-2"]
    replicas = []
    for index in (1, 2, 3):
        actor = LlmActor(LlmSettings(backend="echo"))
        actor.replica = (index, 3)
        replicas.append(actor)
    sessions = [f"pi-{n}" for n in range(40)]
    owners = {s: [i for i, a in enumerate(replicas) if a.serves(s)] for s in sessions}
    assert all(len(o) == 1 for o in owners.values())
    assert len({o[0] for o in owners.values()}) == 3  # the load is spread
    with pytest.raises(ConfigError, match="replicas"):
        load_config(None, ["server.replicas=logger=2"])


def test_satellite_session_reaches_button_and_leds() -> None:
    config = load_config(None, ["satellite.session=kitchen"])
    assert config.section("button").session == config.section("leds").session == "kitchen"


def test_llm_refuses_turns_past_its_queue_bound_as_busy(bus_address: BusAddress) -> None:
    actor = LlmActor(LlmSettings(backend="echo"))
    actor.max_queued_turns = 1
    with actor_on_bus(actor, bus_address, listen=("llm.done", "turn.error")) as client:
        for n in range(5):  # five satellites ask at once
            client.publish(Transcript(session=f"pi-{n}", turn=TURN + n, text=f"question {n}"))
        seen: dict[int, str] = {}
        deadline = time.monotonic() + 15
        while len(seen) < 5 and time.monotonic() < deadline:
            env = client.recv(timeout_ms=100)
            if env is not None and isinstance(env.msg, LlmDone | TurnError):
                seen[env.msg.turn] = "busy" if isinstance(env.msg, TurnError) else "answered"
                if isinstance(env.msg, TurnError):
                    assert env.msg.reason.startswith("busy")
    assert len(seen) == 5, seen
    assert seen[TURN] == "answered"  # the oldest is served first
    assert "busy" in seen.values() and list(seen.values()).count("answered") >= 2


def test_player_of_a_satellite_plays_only_its_session(bus_address: BusAddress, tmp_path: Path) -> None:
    player = PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "{session}-{turn}.wav")))
    player.only_session = "kitchen"
    pcm = bytes(2205 * 2)
    with actor_on_bus(player, bus_address, listen=("player",)) as client:
        for session in ("hall", "kitchen"):
            client.publish(AudioChunk(session=session, turn=TURN, index=0, sample_rate=22050, last=True), pcm)
        events = collect(client, [PlayerEvent, PlayerEvent], timeout_s=10)
    assert {e.msg.session for e in events} == {"kitchen"}
    assert [p.name for p in tmp_path.iterdir()] == [f"kitchen-{TURN}.wav"]


def test_player_answers_beats_and_ends_its_turn_with_an_earcon_when_they_stop(
        bus_address: BusAddress, tmp_path: Path) -> None:
    player = PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "{session}-{turn}.wav")))
    player.only_session = "kitchen"
    player.link.timeout_s = 0.5
    with actor_on_bus(player, bus_address, listen=("ctl.heartbeat",)) as client:
        client.publish(ButtonEvent(session="kitchen", turn=TURN, pressed=True))
        client.publish(Heartbeat(role="server", seq=7))
        answers = of_type(collect(client, [Heartbeat, Heartbeat], timeout_s=5), Heartbeat)
        answer = next(m for m in answers if m.role == "edge")
        assert (answer.session, answer.echo_seq) == ("kitchen", 7)
        deadline = time.monotonic() + 10  # no more beats: the link is declared lost, the earcon sounds
        while not list(tmp_path.glob("error-*.wav")) and time.monotonic() < deadline:
            client.recv(timeout_ms=100)
    assert list(tmp_path.glob("error-*.wav")), "no earcon after the link was lost mid-turn"
    assert player.open_turn is None


def test_logger_moves_a_skewed_satellite_onto_its_clock(bus_address: BusAddress, tmp_path: Path) -> None:
    """A Pi whose clock is 2.5 s ahead: after a beat exchange its stamps are corrected in the record."""
    skew = 2.5
    logger = LoggerActor(LoggerSettings(path=str(tmp_path / "turns.jsonl")))
    with actor_on_bus(logger, bus_address, listen=("ctl.heartbeat", "turn.record")) as client:
        beat = next(m for m in of_type(collect(client, [Heartbeat], timeout_s=5), Heartbeat) if m.role == "server")
        client.publish(Heartbeat(session="pi", role="edge", echo_seq=beat.seq, echo_ts=beat.ts,
                                 ts=time.time() + skew))
        t = time.time()
        pi = t + skew  # what the Pi's clock says now
        for msg in (ButtonEvent(session="pi", turn=TURN, pressed=True, ts=pi - 2.0),
                    ButtonEvent(session="pi", turn=TURN, pressed=False, ts=pi - 0.6),
                    CaptureEnd(session="pi", turn=TURN, frames=70, duration_ms=1400, ts=pi - 0.6),
                    Transcript(session="pi", turn=TURN, text="hi", ts=t - 0.4),  # server stamps
                    LlmDone(session="pi", turn=TURN, text="Hello.", tokens=2, ts=t - 0.3),
                    Say(session="pi", turn=TURN, text="Hello.", index=0, last=True, ts=t - 0.25),
                    PlayerEvent(session="pi", turn=TURN, state="started", ts=pi - 0.1),
                    PlayerEvent(session="pi", turn=TURN, state="finished", ts=pi)):
            client.publish(msg)
        (record,) = [m.record for m in of_type(collect(client, [TurnRecord], timeout_s=10), TurnRecord)]
    assert record["satellite_clock_corrected"] is True
    assert record["satellite_clock_offset_ms"] == pytest.approx(1000 * skew, abs=50)
    assert record["stt_ms"] == pytest.approx(200, abs=50)  # uncorrected it would be 200 - 2500
    assert record["release_to_first_audio_ms"] == pytest.approx(500, abs=50)
