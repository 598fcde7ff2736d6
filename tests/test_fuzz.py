"""Bad input on the bus, the actors' half: every actor's handler, fuzzed.

Each actor gets hypothesis-made messages with odd field values straight into its dispatch path,
then raw garbage over a real socket while it runs; it must stay alive, count the garbage as
dropped, keep its state bounded and still serve a normal turn afterwards. Which actors: the rows
of actors/table.py. The wire half (codec, frame size limit) is tests/test_fuzz_codec.py.
"""


import dataclasses
import math
import os
import random
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.base import Actor
from actors.llm import LlmActor
from actors.llm_backends import EchoGenerator
from actors.llm_settings import LlmSettings
from actors.logger import LoggerActor, LoggerSettings
from actors.mic import MicActor, MicSettings
from actors.persona import PersonaActor, PersonaSettings
from actors.player import PlayerActor, PlayerSettings
from actors.stt import FixedRecognizer, SttActor, SttSettings
from actors.table import ACTORS, BY_NAME
from actors.tools import ToolsActor, ToolsSettings
from actors.tts import TtsActor, TtsSettings
from actors.vad import VadActor, VadSettings
from audio.wav import load_pcm16_mono
from bus.codec import Envelope, encode
from bus.handshake import prove_path, wait_for_actors
from bus.messages import (
    AudioChunk,
    AudioFrame,
    ButtonEvent,
    CaptureEnd,
    LlmDone,
    LlmToken,
    Message,
    Ping,
    PlayerEvent,
    Ready,
    Say,
    ToolCall,
    ToolResult,
    Transcript,
    TurnError,
    TurnRecord,
    VadEvent,
    topic_for,
)
from bus.sockets import BusAddress, BusClient
from tests.helpers import ActorThread, Sendable, collect, send_all
from tests.test_fuzz_codec import HOSTILE, MESSAGES

SAMPLES = Path(__file__).resolve().parents[1] / "launch" / "samples"
TURN = 1_700_000_000_000
"""The turn fuzzing favours, so messages of one turn meet; a fuzzed Interrupt may cancel it."""
VALID = 1_800_000_000_123
"""The normal turn after the fuzzing: no fuzzed message names it."""


def frames_of(name: str, silence_s: float = 0.0) -> list[Sendable]:
    pcm = load_pcm16_mono(SAMPLES / name).tobytes() + bytes(int(32000 * silence_s))
    return [(AudioFrame(turn=VALID, seq=i), pcm[i * 640:(i + 1) * 640]) for i in range(len(pcm) // 640)]


def sizes(actor: Any, *names: str) -> dict[str, int]:
    """Entries held in the actor's per-turn/per-session maps (and the base's), after fuzzing."""
    found = {"_cancelled": len(actor._cancelled), "_pending": len(actor._pending)}
    return found | {name: len(getattr(actor, name)) for name in names}


@dataclass
class ActorCase:
    """One actor: how to build it, what it handles, a normal turn through it, what must stay small."""

    name: str
    """Its row in actors/table.py, which says what it handles."""
    make: Callable[[BusAddress, Path], Actor]
    turn: Callable[[], list[Sendable]]
    expect: list[type[Message]]
    state: Callable[[Any], dict[str, int]] = sizes
    fields: dict[str, st.SearchStrategy[Any]] = dataclasses.field(default_factory=dict)

    @property
    def handles(self) -> tuple[type[Message], ...]:
        return BY_NAME[self.name].handles


EXAMPLES = int(os.environ.get("ROCKY_FUZZ_EXAMPLES", "250"))
"""Fuzzed messages per actor: about a second each on two cores."""
LIMITS = {"_cancelled": 512, "_pending": 64, "turns": 8, "clauses": 17, "splitters": 17, "said": 17,
          "chunk_index": 17, "sessions": 64, "samples": 60 * 16000, "clause_ends": 1024}
CASES = [
    ActorCase("mic", lambda a, _t: MicActor(MicSettings(backend="wav", path=str(SAMPLES / "prompt-1s.wav"),
                                                        realtime=False), a),
              lambda: [ButtonEvent(turn=VALID, pressed=True)], [AudioFrame]),
    ActorCase("vad", lambda _a, _t: VadActor(VadSettings()),
              lambda: [*frames_of("prompt-3s.wav", 1.0), CaptureEnd(turn=VALID, frames=1, duration_ms=20)],
              [VadEvent, VadEvent], lambda a: sizes(a, "turns")),
    ActorCase("stt", lambda _a, _t: SttActor(SttSettings(backend="fixed"), FixedRecognizer("hello rocky")),
              lambda: [*frames_of("prompt-1s.wav"), CaptureEnd(turn=VALID, frames=1, duration_ms=20)], [Transcript],
              lambda a: sizes(a, "turns") | {"samples": max((t.samples for t in a.turns.values()), default=0)}),
    ActorCase("llm", lambda _a, _t: LlmActor(LlmSettings(backend="echo"), EchoGenerator()),
              lambda: [Transcript(turn=VALID, text="Where is Erid?")],
              [LlmToken, LlmDone], lambda a: sizes(a, "clauses") | {"sessions": len(a.memory.sessions)}),
    ActorCase("persona", lambda _a, _t: PersonaActor(PersonaSettings()),
              lambda: [LlmToken(turn=VALID, text="Hello friend.", index=0), LlmDone(turn=VALID, text="x", tokens=1)],
              [Say], lambda a: sizes(a, "splitters", "said")),
    ActorCase("tts", lambda _a, _t: TtsActor(TtsSettings(backend="tone", sample_rate=8000)),
              lambda: [Say(turn=VALID, text="Hello friend.", index=0, last=True)], [AudioChunk]),
    ActorCase("player", lambda _a, t: PlayerActor(PlayerSettings(backend="wav", path=str(t / "r-{turn}.wav"))),
              lambda: [(AudioChunk(turn=VALID, index=0, sample_rate=16000), bytes(3200)),
                       (AudioChunk(turn=VALID, index=1, sample_rate=16000, last=True), b"")],
              [PlayerEvent, PlayerEvent], lambda a: sizes(a, "clause_ends"),
              {"clause": st.integers(-(2**63), 2**64 - 1), "sample_rate": st.integers(-(2**63), 2**64 - 1)}),
    ActorCase("tools", lambda _a, t: ToolsActor(ToolsSettings(timers_path=str(t / "timers.json"))),
              lambda: [ToolCall(turn=VALID, call_id=1, name="timer_left")], [ToolResult]),
    ActorCase("logger", lambda _a, t: LoggerActor(LoggerSettings(path=str(t / "turns.jsonl"))),
              lambda: [ButtonEvent(turn=VALID, pressed=True), Transcript(turn=VALID, text="hi"),
                       PlayerEvent(turn=VALID, state="finished")], [TurnRecord]),
]

NOT_FUZZED = {
    "button": "GPIO pins: tests/test_pi.py drives it through FakePins, and it only reacts to turn ends",
    "leds": "GPIO pins: tests/test_pi.py drives it through FakePins",
    "audible": "records the sound device; tests/test_audio_stack.py runs it on PulseAudio",
    "web": "publishes only for a connected tab; tests/test_web_gateway.py sends bad frames over its real socket",
    "wyoming": "bus news reaches it only for turns its own TCP clients opened; tests/test_wyoming.py sends garbage "
               "over its real socket, tests/test_wyoming_protocol.py tries the event reader's limits",
}
"""Rows of actors/table.py without a fuzz case here, and where they are tested instead."""


def test_every_actor_of_the_table_is_fuzzed_or_says_why_not() -> None:
    assert sorted([c.name for c in CASES] + list(NOT_FUZZED)) == sorted(spec.name for spec in ACTORS)


TEXT = st.text(max_size=12) | st.sampled_from(["", " ", "\x00", "💥" * 40, "a" * 5000, "word " * 400, "{turn}"])
INT = st.sampled_from([0, -1, 1, 320, 8000, 16000, 48000, 2**31, 2**63 - 1, -(2**63), 2**64 - 1]) | st.integers(
    -(2**63), 2**64 - 1)
BY_TYPE: dict[Any, st.SearchStrategy[Any]] = {
    str: TEXT, int: INT, float: st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 1e308]),
    bool: st.booleans(), list[str]: st.lists(TEXT, max_size=3), list[int]: st.lists(INT, max_size=3),
    dict[str, Any]: st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) | st.none(), max_size=3),
    list[dict[str, Any]]: st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)
                                                   | st.none(), max_size=3), max_size=3),
}
COMMON = {"session": st.sampled_from(["local", "", "pi-2", "s" * 300]) | st.text(max_size=6),
          "turn": st.sampled_from([TURN, TURN + 1, 0, -1, 2**63 - 1]) | INT,
          "state": st.sampled_from(["started", "finished", "stopped"]) | TEXT}
PAYLOAD = st.binary(max_size=700) | st.sampled_from([b"\1", bytes(640), bytes(641), b"\xff\x7f" * 320]) | (
    st.sampled_from([1 << 20, 4 << 20]).map(bytes))


def _strategy(kind: Any) -> st.SearchStrategy[Any]:
    """Values for a field of type `kind`: a closed set's members and any text besides (the codec refuses
    that text at the receiver, which is part of what is fuzzed)."""
    if typing.get_origin(kind) is typing.Literal:
        return st.sampled_from(typing.get_args(kind)) | TEXT
    return BY_TYPE[kind]


@st.composite
def envelopes(draw: st.DrawFn, case: ActorCase, topics: tuple[str, ...]) -> Envelope:
    cls = draw(st.sampled_from(case.handles) | st.sampled_from(MESSAGES))
    hints = typing.get_type_hints(cls)
    strategies = {**COMMON, **case.fields}
    values = {f.name: draw(strategies.get(f.name, _strategy(hints[f.name]))) for f in dataclasses.fields(cls)}
    msg = cls(**values)
    topic = draw(st.sampled_from([topic_for(msg), *topics, "ctl.fuzz"]))
    return Envelope(topic=topic, msg=msg, payload=draw(PAYLOAD) if cls.HAS_PAYLOAD else b"")


def garbage(topic: bytes) -> list[list[bytes]]:
    rng = random.Random(5)
    frames = [[topic, rng.randbytes(rng.randrange(1, 64))] for _ in range(20)]
    frames += [[topic, rng.randbytes(2000), rng.randbytes(4)], [topic], [topic, b"", b"", b"", b""]]
    frames += [[topic, h] for h in HOSTILE.values()]
    frames += [[topic, encode(AudioFrame(seq=0))[1], b"\0"], [topic, encode(Say(text="a", index=0))[1], b"\0\0"]]
    return frames


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_actor_survives_fuzzed_messages_and_garbage(case: ActorCase, bus_address: BusAddress,
                                                    tmp_path: Path) -> None:
    actor = case.make(bus_address, tmp_path)
    watcher = BusClient(bus_address, ("turn.error",), name="watcher")
    try:
        actor.connect(bus_address)
        prove_path(watcher)
        prove_path(actor.bus)
        actor.on_start()
        slowest = _fuzz(actor, case)
        # Published after everything the fuzzing made, on the same socket: seeing it means all arrived.
        actor.publish(TurnError(stage="marker", reason="end of fuzzing"))
        errors = until(watcher, lambda m: isinstance(m, TurnError) and m.stage == "marker")
    finally:
        actor.on_stop()
        actor.bus.close()
        watcher.close()
    # A handler exception is caught by the base and ends the turn "<actor> failed: <exception>":
    # survivable, but each one is a validation gap.
    crashes = [e.reason for e in errors if isinstance(e, TurnError) and " failed: " in e.reason]
    assert crashes == []
    assert slowest < 10.0
    held = case.state(actor)
    assert {k: v for k, v in held.items() if v > LIMITS[k]} == {}
    _garbage_then_a_normal_turn(actor, case, bus_address)


def _fuzz(actor: Actor, case: ActorCase) -> float:
    slowest = 0.0

    # Derandomized: the same examples on every run, so the suite never flakes; raise
    # ROCKY_FUZZ_EXAMPLES for a deeper search.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(envelopes(case, actor.topics))
    def feed(env: Envelope) -> None:
        nonlocal slowest
        started = time.monotonic()
        if not actor._control(env):  # exactly what Actor.run does with a received envelope
            actor._dispatch(env)
        actor.stopping = False  # a fuzzed Shutdown may name this actor; the next example goes on
        slowest = max(slowest, time.monotonic() - started)

    feed()
    return slowest


def _garbage_then_a_normal_turn(actor: Actor, case: ActorCase, address: BusAddress) -> None:
    """The same actor, now running its real loop: raw garbage over the socket, then a normal turn."""
    driver = BusClient(address, ("",), name="driver")
    try:
        with ActorThread(actor, address) as runner:
            prove_path(driver)
            wait_for_actors(driver, {actor.name}, timeout_s=15)
            sent = [f for topic in (*actor.topics, "ctl.ping") for f in garbage((topic or "x").encode())]
            send_all(driver, sent)
            driver.publish(Ping(nonce=424242))  # behind the garbage on one path: answered once it was all read
            until(driver, lambda m: isinstance(m, Ready) and m.nonce == 424242)
            assert runner.thread.is_alive()
            assert actor.bus.dropped == len(sent)
            send_all(driver, case.turn())
            got = collect(driver, case.expect, 15)
            assert [e for e in got if type(e.msg) is case.expect[-1] and e.msg.turn == VALID]
    finally:
        driver.close()


def until(client: BusClient, last: Callable[[Message], bool], timeout_s: float = 15.0) -> list[Message]:
    """Every message `client` receives up to and including the first that matches `last`."""
    seen: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None:
            seen.append(env.msg)
            if last(env.msg):
                return seen
    raise AssertionError(f"{client.name}: the awaited message never came; saw {len(seen)} others")
