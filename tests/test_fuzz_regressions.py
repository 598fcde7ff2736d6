"""Inputs the fuzz suite (tests/test_fuzz.py) once found crashing an actor or growing its state without bound.

Each was fixed in the actor; each test here keeps it fixed. The actors are driven straight through
`handle`, connected to a real bus so what they publish goes somewhere.
"""

from __future__ import annotations

import contextlib
import json
import math
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.base import Actor
from actors.logger import LoggerActor, LoggerSettings
from actors.persona import PersonaActor, PersonaSettings
from actors.player import PlayerActor, PlayerSettings
from actors.tts import TtsActor, TtsSettings
from bus.codec import Envelope
from bus.messages import AudioChunk, ButtonEvent, LlmToken, PlayerEvent, Say
from bus.sockets import BusAddress
from tests.test_fuzz import LIMITS, TURN

A = typing.TypeVar("A", bound=Actor)


class Connect:
    """Connects and starts actors on the test's bus; `close` stops them and closes their sockets."""

    def __init__(self, address: BusAddress) -> None:
        self.address = address
        self.opened: list[Actor] = []

    def __call__(self, actor: A) -> A:
        actor.connect(self.address)
        self.opened.append(actor)
        actor.on_start()
        return actor

    def close(self) -> None:
        while self.opened:
            actor = self.opened.pop()
            with contextlib.suppress(Exception):  # a test that already failed must still close every socket
                actor.on_stop()
            actor.bus.close()


@pytest.fixture
def connect(bus_address: BusAddress) -> Iterator[Connect]:
    connector = Connect(bus_address)
    try:
        yield connector
    finally:
        connector.close()


def test_player_takes_clause_indexes_out_of_range_without_growing(connect: Connect, tmp_path: Path) -> None:
    player = connect(PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "r.wav"))))
    player.handle(Envelope("audio.out", AudioChunk(index=0, sample_rate=16000, clause=-5), b"\0\0"))
    player.handle(Envelope("audio.out", AudioChunk(index=1, sample_rate=16000, clause=2_000_000), b"\0\0"))
    assert len(player.clause_ends) <= LIMITS["clause_ends"]


def test_player_takes_sample_rates_of_zero_negative_and_past_32_bits(connect: Connect, tmp_path: Path) -> None:
    player = connect(PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "r-{turn}.wav"))))
    for turn, rate in enumerate([0, -8000, 2**40]):
        player.handle(Envelope("audio.out", AudioChunk(turn=turn, index=0, sample_rate=rate), b"\0\0"))
    player.on_stop()  # a rate past 32 bits cannot go into a WAV header: this raised struct.error


def test_player_keeps_the_session_name_out_of_the_wav_path(connect: Connect, tmp_path: Path) -> None:
    player = connect(PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "out" / "{session}.wav"))))
    player.handle(Envelope("audio.out", AudioChunk(session="../escaped", index=0, sample_rate=8000), b"\0\0"))
    player.on_stop()
    assert not (tmp_path / "escaped.wav").exists()


def test_logger_takes_a_turn_id_past_the_year_9999(connect: Connect, tmp_path: Path) -> None:
    logger = connect(LoggerActor(LoggerSettings(path=str(tmp_path / "t.jsonl"))))
    logger.handle(Envelope("player", PlayerEvent(turn=2**63 - 1, state="finished")))


def test_logger_writes_json_for_a_nan_timestamp(connect: Connect, tmp_path: Path) -> None:
    logger = connect(LoggerActor(LoggerSettings(path=str(tmp_path / "t.jsonl"))))
    logger.handle(Envelope("button", ButtonEvent(turn=TURN, pressed=True, ts=math.nan)))
    logger.handle(Envelope("player", PlayerEvent(turn=TURN, state="finished")))
    logger.on_stop()
    for line in (tmp_path / "t.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda word: pytest.fail(f"{word} is not JSON"))


def test_tts_forgets_turns_that_never_send_clause_0(connect: Connect) -> None:
    tts = connect(TtsActor(TtsSettings(backend="silent")))
    for turn in range(100):
        tts.handle(Envelope("say", Say(turn=turn, text="hi", index=1)))  # a turn whose index 0 was lost
    assert len(tts.chunk_index) <= LIMITS["chunk_index"]


def test_persona_forgets_turns_that_never_send_llm_done(connect: Connect) -> None:
    persona = connect(PersonaActor(PersonaSettings(first_clause_words=1)))
    for turn in range(100):
        persona.handle(Envelope("llm.token", LlmToken(turn=turn, text="Hello there friend. ", index=0)))
    assert len(persona.said) <= LIMITS["said"]
