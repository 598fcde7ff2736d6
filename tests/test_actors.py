"""Each actor alone on a real bus, driven by `run_actor`, with fast backends injected."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from actors.base import Actor
from actors.llm import LlmActor
from actors.llm_backends import EchoGenerator
from actors.llm_settings import LlmSettings
from actors.logger import LoggerActor, LoggerSettings
from actors.mic import MicActor, MicSettings
from actors.persona import PersonaActor, PersonaSettings
from actors.player import PlayerActor, PlayerSettings
from actors.stt import FixedRecognizer, SttActor, SttSettings
from actors.timing import TIMING_FIELDS
from actors.tts import TtsActor, TtsSettings
from actors.vad import VadActor, VadSettings
from audio.wav import load_pcm16_mono, write_wav
from bus.codec import Envelope
from bus.messages import (
    AudioChunk,
    AudioFrame,
    ButtonEvent,
    CaptureEnd,
    LlmDone,
    LlmToken,
    Ping,
    PlayerEvent,
    Ready,
    Say,
    Transcript,
    TurnError,
    TurnRecord,
    VadEvent,
)
from bus.sockets import BusAddress
from tests.helpers import OneOrMore, Sendable, actor_on_bus, expect_exactly, of_type, run_actor

SAMPLES = Path(__file__).resolve().parents[1] / "launch" / "samples"
TURN = 1_700_000_000_000


def frames_of(pcm: np.ndarray, turn: int = TURN) -> list[tuple[AudioFrame, bytes]]:
    step = 320
    count = len(pcm) // step
    return [(AudioFrame(turn=turn, seq=i), pcm[i * step:(i + 1) * step].tobytes()) for i in range(count)]


def test_vad_marks_speech_start_and_stop(bus_address: BusAddress) -> None:
    pcm = load_pcm16_mono(SAMPLES / "prompt-3s.wav")
    silence = np.zeros(16000, dtype=np.int16)  # a second after speech: the stop must show
    send: list[Sendable] = [*frames_of(np.concatenate([pcm, silence])), CaptureEnd(turn=TURN, frames=1, duration_ms=20)]
    # A stop is a hint for the settled partial, not the end of the turn (the button is): with the default
    # 80 ms a longer pause between two words of this recording is a stop and a start too.
    got = run_actor(VadActor(VadSettings()), bus_address, send, expect=[OneOrMore(VadEvent)], listen=["vad"])
    events = of_type(got, VadEvent)
    assert [e.speech for e in events] in ([True, False], [True, False, True, False])
    start, stop = events[0].audio_ms, events[-1].audio_ms
    assert 100 <= start < 800 and start < stop <= 1000 * len(pcm) / 16000 + 400
    assert 1000 * len(pcm) / 16000 - 1500 < stop  # the last stop is at the end of the speech


def test_stt_transcribes_a_turn_on_capture_end(bus_address: BusAddress) -> None:
    pcm = load_pcm16_mono(SAMPLES / "prompt-1s.wav")
    send: list[Sendable] = [*frames_of(pcm), CaptureEnd(turn=TURN, frames=10, duration_ms=200)]
    actor = SttActor(SttSettings(backend="fixed"), recognizer=FixedRecognizer("hello rocky"))
    got = run_actor(actor, bus_address, send, expect=[Transcript], listen=["stt."])
    (text,) = of_type(got, Transcript)
    assert text.text == "hello rocky" and text.turn == TURN
    assert text.audio_ms == 20.0 * (len(pcm) // 320)  # whole 20 ms frames


def test_stt_refuses_silence_with_a_turn_error(bus_address: BusAddress) -> None:
    silence = np.zeros(16000, dtype=np.int16)
    send: list[Sendable] = [*frames_of(silence), CaptureEnd(turn=TURN, frames=50, duration_ms=1000)]
    actor = SttActor(SttSettings(backend="fixed"), recognizer=FixedRecognizer("hallucination"))
    got = run_actor(actor, bus_address, send, expect=[TurnError], listen=["stt.", "turn."])
    (error,) = of_type(got, TurnError)
    assert error.stage == "stt" and "no speech heard" in error.reason
    assert not of_type(got, Transcript)


def test_llm_streams_tokens_then_done(bus_address: BusAddress) -> None:
    actor = LlmActor(LlmSettings(backend="echo"), generator=EchoGenerator())
    got = run_actor(actor, bus_address, [Transcript(turn=TURN, text="Where is Erid?")],
                    expect=[*[LlmToken] * 5, LlmDone], listen=["llm."])  # "You said: Where is Erid?", by word
    tokens = of_type(got, LlmToken)
    (done,) = of_type(got, LlmDone)
    assert "".join(t.text for t in tokens) == done.text == "You said: Where is Erid?"
    assert [t.index for t in tokens] == list(range(len(tokens)))
    assert done.tokens == len(tokens) and not done.cancelled


def test_llm_memory_is_trimmed_to_its_budget() -> None:
    from actors.llm_memory import ConversationMemory

    memory = ConversationMemory(budget_tokens=20)
    for i in range(10):
        memory.add("pi-1", f"question {i}", f"answer number {i} is here", EchoGenerator())
    history = memory.history("pi-1")
    assert history[-1] == ("question 9", "answer number 9 is here")
    assert 0 < len(history) < 10 and memory.history("other") == []


def test_persona_cuts_clauses_and_speaks_rocky(bus_address: BusAddress) -> None:
    pieces = ["Hello", " friend", "!", " Are", " you", " going", " to", " the", " ship", "?"]
    send: list[Sendable] = [LlmToken(turn=TURN, text=p, index=i) for i, p in enumerate(pieces)]
    send.append(LlmDone(turn=TURN, text="".join(pieces), tokens=len(pieces)))
    got = run_actor(PersonaActor(PersonaSettings(style="rocky")), bus_address, send,
                    expect=[Say, Say], listen=["say"])
    says = of_type(got, Say)
    assert [s.text for s in says] == ["Hello friend friend friend!", "Are you going to ship, question?"]
    assert [s.last for s in says] == [False, True]


def test_tts_speaks_each_clause_and_closes_the_reply(bus_address: BusAddress) -> None:
    send = [Say(turn=TURN, text="Hello friend.", index=0), Say(turn=TURN, text="Good.", index=1, last=True)]
    got = run_actor(TtsActor(TtsSettings(backend="tone")), bus_address, send,
                    expect=[AudioChunk] * 4, listen=["audio.out"])
    chunks = [e for e in got if isinstance(e.msg, AudioChunk)]
    assert [m.index for m in of_type(chunks, AudioChunk)] == list(range(4))
    assert [m.last for m in of_type(chunks, AudioChunk)] == [False, False, False, True]
    assert all(len(c.payload) > 1000 for c in chunks[:3]) and chunks[3].payload == b""


def test_player_writes_the_reply_and_reports_it(bus_address: BusAddress, tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(22050) / 5) * 8000).astype(np.int16).tobytes()
    send = [(AudioChunk(turn=TURN, index=0, sample_rate=22050), pcm),
            (AudioChunk(turn=TURN, index=1, sample_rate=22050, last=True), b"")]
    out = tmp_path / "reply-{turn}.wav"
    got = run_actor(PlayerActor(PlayerSettings(backend="wav", path=str(out))), bus_address, send,
                    expect=[PlayerEvent, PlayerEvent], listen=["player"])
    assert [e.state for e in of_type(got, PlayerEvent)] == ["started", "finished"]
    with wave.open(str(tmp_path / f"reply-{TURN}.wav")) as w:
        assert w.getframerate() == 22050 and w.getnframes() == 22050


def test_mic_streams_a_wav_between_press_and_release(bus_address: BusAddress) -> None:
    path = SAMPLES / "prompt-1s.wav"
    count = -(-len(load_pcm16_mono(path)) // 320)  # 20 ms frames, the last one padded
    mic = MicActor(MicSettings(backend="wav", path=str(path), realtime=False))
    with actor_on_bus(mic, bus_address, listen=["audio.in"]) as client:
        press = ButtonEvent(turn=TURN, pressed=True)
        client.publish(press)
        frames = of_type(expect_exactly(client, [AudioFrame] * count, 15, sent=[press]), AudioFrame)
        release = ButtonEvent(turn=TURN, pressed=False)
        client.publish(release)
        (end,) = of_type(expect_exactly(client, [CaptureEnd], 15, sent=[release]), CaptureEnd)
    assert [f.seq for f in frames] == list(range(count)) and {f.turn for f in frames} == {TURN}
    assert [f.source_end for f in frames] == [False] * (count - 1) + [True]
    assert (end.turn, end.frames, end.duration_ms) == (TURN, count, 20.0 * count)


def test_mic_refuses_a_bad_wav_and_stays_alive(bus_address: BusAddress, tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    mic = MicActor(MicSettings(backend="wav", path=str(bad)))
    got = run_actor(mic, bus_address, [ButtonEvent(turn=TURN, pressed=True), Ping(nonce=99)],
                    expect=[TurnError, Ready], listen=["turn.", "ctl.ready"])
    (error,) = of_type(got, TurnError)
    assert error.stage == "mic" and "notes.wav" in error.reason and "not a WAV" in error.reason
    assert any(r.nonce == 99 for r in of_type(got, Ready))


class Exploding(Actor):
    name = "exploding"
    topics = ("say",)

    def handle(self, env: Envelope) -> None:
        raise RuntimeError("kaboom")


class Twice(Actor):
    name = "twice"
    topics = ("stt.final",)

    def handle(self, env: Envelope) -> None:
        for _ in range(2):  # the bug run_actor must catch: one message published twice
            self.publish(Say(turn=env.msg.turn, text="once", index=0))


def test_run_actor_fails_on_a_duplicate(bus_address: BusAddress) -> None:
    with pytest.raises(AssertionError, match=r"expected \['Say'\], got \['Say', 'Say'\]"):
        run_actor(Twice(), bus_address, [Transcript(turn=TURN, text="hi")], expect=[Say], listen=["say"])


def test_a_failing_handler_ends_the_turn_not_the_actor(bus_address: BusAddress) -> None:
    send: list[Sendable] = [Say(turn=TURN, text="x", index=0), [b"say", b"\xc1garbage"], Ping(nonce=7)]
    got = run_actor(Exploding(), bus_address, send, expect=[TurnError, Ready], listen=["turn.", "ctl.ready"])
    (error,) = of_type(got, TurnError)
    assert "kaboom" in error.reason
    assert any(r.nonce == 7 for r in of_type(got, Ready))


def test_logger_writes_one_complete_record_per_turn(bus_address: BusAddress, tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    t0 = 1_800_000_000.0
    turn = [ButtonEvent(turn=TURN, pressed=True, ts=t0), ButtonEvent(turn=TURN, pressed=False, ts=t0 + 2),
            CaptureEnd(turn=TURN, frames=100, duration_ms=2000, ts=t0 + 2.01),
            Transcript(turn=TURN, text="hi", compute_ms=250, ts=t0 + 2.3),
            LlmToken(turn=TURN, text="Hello", index=0, ts=t0 + 2.4),
            Say(turn=TURN, text="Hello.", index=0, ts=t0 + 2.45),
            LlmDone(turn=TURN, text="Hello.", tokens=3, ts=t0 + 2.5),
            AudioChunk(turn=TURN, index=0, sample_rate=22050, ts=t0 + 2.55),
            Say(turn=TURN, text="", index=1, last=True, ts=t0 + 2.56),
            AudioChunk(turn=TURN, index=1, sample_rate=22050, last=True, ts=t0 + 2.6),
            PlayerEvent(turn=TURN, state="started", ts=t0 + 2.6),
            PlayerEvent(turn=TURN, state="finished", ts=t0 + 3.6)]
    got = run_actor(LoggerActor(LoggerSettings(path=str(path))), bus_address, turn,
                    expect=[TurnRecord], listen=["turn.record"])
    (published,) = of_type(got, TurnRecord)
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record == published.record
    assert all(record[k] is not None for k in TIMING_FIELDS)
    assert record["release_to_first_audio_ms"] == 600.0 and record["press_to_first_audio_ms"] == 2600.0
    assert record["stt_ms"] == 300.0 and record["llm_first_token_ms"] == 100.0 and record["status"] == "ok"


def test_wav_fixture_of_helper_is_valid(tmp_path: Path) -> None:
    """write_wav + load_pcm16_mono agree, as the mic relies on."""
    pcm = (np.arange(1600) % 100).astype(np.int16)
    write_wav(tmp_path / "a.wav", pcm, 16000)
    assert np.array_equal(load_pcm16_mono(tmp_path / "a.wav"), pcm)
