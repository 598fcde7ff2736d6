"""player.volume: replies come out scaled (clipped at full scale), at whatever rate the voice speaks."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from actors.player import PlayerActor, PlayerSettings
from audio.effects import EffectError
from bus.messages import AudioChunk, PlayerEvent
from bus.sockets import BusAddress
from tests.helpers import of_type, run_actor


def played(tmp_path: Path, bus_address: BusAddress, volume: float, pcm: np.ndarray, rate: int) -> np.ndarray:
    send = [(AudioChunk(turn=4, index=0, sample_rate=rate), pcm.tobytes()),
            (AudioChunk(turn=4, index=1, sample_rate=rate, last=True), b"")]
    player = PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "reply-{turn}.wav"), volume=volume))
    got = run_actor(player, bus_address, send, expect=[PlayerEvent, PlayerEvent], listen=["player"])
    assert [e.state for e in of_type(got, PlayerEvent)] == ["started", "finished"]
    with wave.open(str(tmp_path / "reply-4.wav")) as w:
        assert w.getframerate() == rate
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def test_half_volume_halves_a_24_khz_reply(tmp_path: Path, bus_address: BusAddress) -> None:
    pcm = (np.sin(np.arange(24000) / 5.0) * 12000).astype(np.int16)
    out = played(tmp_path, bus_address, 0.5, pcm, 24000)
    assert np.abs(out.astype(np.int32) - np.round(pcm / 2)).max() <= 1


def test_loud_volume_clips_instead_of_wrapping(tmp_path: Path, bus_address: BusAddress) -> None:
    pcm = np.array([20000, -20000, 100] * 1000, dtype=np.int16)
    out = played(tmp_path, bus_address, 3.0, pcm, 22050)
    assert out[:3].tolist() == [32767, -32768, 300]


@pytest.mark.parametrize("volume", [-0.1, 4.5])
def test_a_volume_out_of_range_is_refused_by_name(volume: float) -> None:
    with pytest.raises(EffectError, match=r"player.volume .*use 0 \(silent\) to 4"):
        PlayerActor(PlayerSettings(backend="wav", volume=volume))
