"""The player counts the silence inside a reply that a real-time device would have (`stalled_ms`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from actors.player import PlayerActor, PlayerSettings
from bus.messages import AudioChunk, PlayerEvent
from bus.sockets import BusAddress
from tests.helpers import of_type, run_actor

RATE = 16000


def clock(monkeypatch: pytest.MonkeyPatch, times: list[float]) -> None:
    ticks: Iterator[float] = iter(times)
    monkeypatch.setattr(time, "time", lambda: next(ticks))


def test_a_clause_that_comes_after_the_audio_ran_out_is_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    player = PlayerActor(PlayerSettings(backend="wav"))
    # 0.5 s clauses arriving at 0, 0.3 (in time), 1.2 (the audio ran out at 1.0) and 1.3 (in time again)
    clock(monkeypatch, [100.0, 100.3, 101.2, 101.3])
    for _ in range(4):
        player._keep_pace(0.5)
    assert player.stalled_ms == pytest.approx(200.0)
    assert player.runs_out_at == pytest.approx(102.2)


def test_the_sequential_flow_has_no_stalls_to_count(monkeypatch: pytest.MonkeyPatch) -> None:
    player = PlayerActor(PlayerSettings(backend="wav", streaming=False))  # the whole reply is played at once
    clock(monkeypatch, [100.0, 105.0])
    player._keep_pace(0.5)
    player._keep_pace(0.5)
    assert player.stalled_ms == 0.0


def test_the_finished_event_carries_the_stall(tmp_path: Path, bus_address: BusAddress) -> None:
    second = np.zeros(RATE, dtype=np.int16).tobytes()  # one second each: the second comes long before the end
    send = [(AudioChunk(turn=5, index=0, sample_rate=RATE), second),
            (AudioChunk(turn=5, index=1, sample_rate=RATE, clause=1, last=True), second)]
    player = PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "reply-{turn}.wav")))
    got = of_type(run_actor(player, bus_address, send, expect=[PlayerEvent, PlayerEvent], listen=["player"]),
                  PlayerEvent)
    assert [(e.state, e.stalled_ms) for e in got] == [("started", 0.0), ("finished", 0.0)]
