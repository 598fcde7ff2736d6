"""Behaviour of the streaming turn and of barge-in (the speed itself is measured by `rocky-relay bench`)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from actors.llm import LlmActor
from actors.llm_backends import EchoGenerator
from actors.llm_settings import LlmSettings
from actors.logger import LoggerActor, LoggerSettings
from actors.player import PlayerActor, PlayerSettings
from actors.stt import SttActor, SttSettings
from bus.messages import (
    AudioChunk,
    AudioFrame,
    CaptureEnd,
    Interrupt,
    LlmDone,
    LlmToken,
    Ping,
    PlayerEvent,
    Ready,
    Say,
    Transcript,
    TurnRecord,
    VadEvent,
)
from bus.sockets import BusAddress
from tests.helpers import OneOrMore, Sendable, actor_on_bus, collect, of_type, run_actor, send_all

TURN = 1_700_000_000_000


class LengthRecognizer:
    """Text that depends on how much audio it got, so a stale partial is easy to tell apart."""

    description = "length"

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio: np.ndarray) -> str:
        self.calls += 1
        return f"heard {len(audio) // 16000} seconds"


def speech_frames(seconds: float, start_seq: int = 0, level: float = 3000) -> list[Sendable]:
    noise = (np.random.default_rng(1).standard_normal(int(16000 * seconds)) * level).astype(np.int16)
    return [(AudioFrame(turn=TURN, seq=start_seq + i), noise[i * 320:(i + 1) * 320].tobytes())
            for i in range(len(noise) // 320)]


def partial_then_final(bus_address: BusAddress, recognizer: LengthRecognizer,
                       after_partial: list[Sendable]) -> tuple[Transcript, Transcript]:
    """Two seconds of speech, VAD hears it stop, the settled partial comes; then `after_partial`."""
    stt = SttActor(SttSettings(backend="fixed", partial_every_ms=60_000), recognizer)
    with actor_on_bus(stt, bus_address, ["stt."]) as client:
        send_all(client, [*speech_frames(2.0), VadEvent(turn=TURN, speech=True, audio_ms=0),
                          VadEvent(turn=TURN, speech=False, audio_ms=1800)])
        (partial,) = of_type(collect(client, [Transcript], 10), Transcript)
        send_all(client, after_partial)
        (final,) = of_type(collect(client, [Transcript], 10), Transcript)
    return partial, final


def test_settled_partial_is_reused_when_nothing_follows(bus_address: BusAddress) -> None:
    recognizer = LengthRecognizer()
    partial, final = partial_then_final(bus_address, recognizer,  # released after the partial
                                        [CaptureEnd(turn=TURN, frames=100, duration_ms=2000)])
    assert partial.settled and not partial.final
    assert final.final and final.reused_partial and final.text == partial.text == "heard 2 seconds"
    assert recognizer.calls == 1


def test_a_settled_partial_is_discarded_when_speech_goes_on(bus_address: BusAddress) -> None:
    partial, final = partial_then_final(bus_address, LengthRecognizer(), [
        VadEvent(turn=TURN, speech=True, audio_ms=2000), *speech_frames(1.0, start_seq=100),
        CaptureEnd(turn=TURN, frames=150, duration_ms=3000)])
    assert partial.text == "heard 2 seconds"
    assert final.final and not final.reused_partial and final.text == "heard 3 seconds"


@pytest.mark.parametrize(("waits_below_peak_db", "third_partial_ms"), [(25.0, 1620.0), (0.0, 1500.0)])
def test_a_partial_due_while_the_voice_fades_waits_for_a_louder_frame(
        bus_address: BusAddress, waits_below_peak_db: float, third_partial_ms: float) -> None:
    """Partials every 0.5 s: one due in the fading 0.6 s (30 dB down) waits for the next loud frame, so
    it cannot hold up the settled partial that VAD's stop would ask for; with the wait off it runs on time."""
    faint = speech_frames(0.6, start_seq=50, level=3000 / 32)
    loud_again = speech_frames(0.1, start_seq=80)
    stt = SttActor(SttSettings(backend="fixed", partial_every_ms=500,
                               partial_waits_below_peak_db=waits_below_peak_db), LengthRecognizer())
    with actor_on_bus(stt, bus_address, ["stt."]) as client:
        send_all(client, [VadEvent(turn=TURN, speech=True, audio_ms=0), *speech_frames(1.0), *faint, *loud_again])
        partials = of_type(collect(client, [Transcript] * 3, 10), Transcript)
    assert [p.audio_ms for p in partials] == [500.0, 1000.0, third_partial_ms]
    assert not any(p.final or p.settled for p in partials)


def test_no_stale_chunk_plays_after_an_interrupt(bus_address: BusAddress, tmp_path: Path) -> None:
    block = (np.ones(2205) * 1000).astype(np.int16).tobytes()  # 100 ms
    send: list[Sendable] = [(AudioChunk(turn=TURN, index=0, sample_rate=22050, clause=0), block),
                            (AudioChunk(turn=TURN, index=1, sample_rate=22050, clause=1), block),
                            Interrupt(turn=TURN),
                            (AudioChunk(turn=TURN, index=2, sample_rate=22050, clause=1), block),
                            (AudioChunk(turn=TURN, index=3, sample_rate=22050, clause=2, last=True), b"")]
    out = tmp_path / "r-{turn}.wav"
    player = PlayerActor(PlayerSettings(backend="wav", path=str(out)))
    got = run_actor(player, bus_address, send, expect=[PlayerEvent, PlayerEvent], listen=["player"])
    events = of_type(got, PlayerEvent)
    assert [e.state for e in events] == ["started", "stopped"]
    assert events[1].clauses_played == 1  # clause 1 was cut short
    with wave.open(str(tmp_path / f"r-{TURN}.wav")) as w:
        assert w.getnframes() == 2 * 2205  # the late chunk never reached the output


def test_memory_keeps_only_the_clauses_played(bus_address: BusAddress) -> None:
    llm = LlmActor(LlmSettings(backend="echo"), generator=EchoGenerator())
    with actor_on_bus(llm, bus_address, ["llm.done", "ctl.ready"]) as client:
        send_all(client, [Transcript(turn=TURN, text="tell me a story")])
        collect(client, [LlmDone], 10)
        assert llm.memory.history("local") == [("tell me a story", "You said: tell me a story")]
        send_all(client, [Say(turn=TURN, text="Once upon time.", index=0),
                          Say(turn=TURN, text="There was ship.", index=1), Interrupt(turn=TURN),
                          PlayerEvent(turn=TURN, state="stopped", clauses_played=1), Ping(nonce=5)])
        collect(client, [Ready], 10)  # the actor handled everything sent before the ping
    assert llm.memory.history("local") == [("tell me a story", "Once upon time.")]


def test_interrupted_turn_record_has_interrupt_to_silence(bus_address: BusAddress, tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    send: list[Sendable] = [Transcript(turn=TURN, text="hi", source="typed", ts=t0),
                            PlayerEvent(turn=TURN, state="started", ts=t0 + 0.3),
                            Interrupt(turn=TURN, ts=t0 + 1.0),
                            PlayerEvent(turn=TURN, state="stopped", ts=t0 + 1.012)]
    path = tmp_path / "turns.jsonl"
    got = run_actor(LoggerActor(LoggerSettings(path=str(path))), bus_address, send, expect=[TurnRecord],
                    listen=["turn.record"])
    (record,) = [r.record for r in of_type(got, TurnRecord)]
    assert record["status"] == "interrupted" and record["interrupt_to_silence_ms"] == 12.0
    assert json.loads(path.read_text()) == record


@pytest.mark.models
def test_sequential_and_streaming_give_the_same_reply(bus_address: BusAddress) -> None:
    """Same seed, same prompt: the modes differ only in when words move on, not in which words."""
    replies = []
    for streaming in (True, False):
        llm = LlmActor(LlmSettings(streaming=streaming, history_tokens=0))
        got = run_actor(llm, bus_address, [Transcript(turn=TURN, text="What is the biggest planet?")],
                        expect=[OneOrMore(LlmToken), LlmDone], listen=["llm."], timeout_s=60)
        tokens = of_type(got, LlmToken)
        (done,) = of_type(got, LlmDone)
        assert "".join(t.text for t in tokens).strip() == done.text
        replies.append(done.text)
    assert replies[0] == replies[1] and replies[0]
