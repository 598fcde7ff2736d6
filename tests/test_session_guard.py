"""A satellite with a valid key speaks and reads only its own session through the CURVE proxy, and controls
no actor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import zmq

from actors.base import Actor
from bus.codec import decode, encode
from bus.handshake import prove_path, wait_for_actors
from bus.messages import ActorDown, Heartbeat, Interrupt, Message, Ping, Say, Shutdown, Transcript
from bus.session_guard import refusal, subscription_refusal
from bus.sockets import BusAddress, BusClient
from tests.helpers import ActorThread
from tests.test_curve import CurveBus, curve_bus, curve_bus_of  # noqa: F401  (the fixture)


def heard_until(sub: BusClient, pub: BusClient, marker: str, timeout_s: float = 5.0,
                session: str | None = None) -> list[Message]:
    """Everything `sub` hears until `pub`'s marker Say arrives (re-sent against the slow joiner). One publisher's
    messages keep their order through the proxy, so what was sent before the first marker arrived first.
    The marker is `session`'s, by default the publisher's name (a satellite speaks for its own session)."""
    heard: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(Say(session=session or pub.name, text=marker, index=0))
        env = sub.recv(timeout_ms=50)
        while env is not None:
            heard.append(env.msg)
            if isinstance(env.msg, Say) and env.msg.text == marker:
                return heard
            env = sub.recv(timeout_ms=0)
    raise AssertionError(f"{marker!r} never arrived; heard {heard}")


FORBIDDEN: list[Message] = [
    Transcript(session="bob", turn=5, text="HACKED", source="typed"),  # a turn in another satellite's session
    Interrupt(session="bob", turn=5),  # stopping another satellite's reply
    Shutdown(session="alice", actors=["llm"], pids=list(range(1, 4096))),  # stopping server actors
    ActorDown(session="alice", actor="llm", exit_code=-9, restart_in_s=0.0),  # failing everyone's turns
    Heartbeat(session="alice", role="server"),  # a fake server beat: every satellite's link watch reads it
]


def test_a_satellite_cannot_speak_for_another_session_nor_control_actors(curve_bus: CurveBus) -> None:  # noqa: F811
    alice = curve_bus.client("alice", curve_bus.satellites["alice"])
    server_side = curve_bus.client("server-actor", curve_bus.address.curve, ("",))
    for client in (alice, server_side):
        prove_path(client, timeout_s=5)
    heard_until(server_side, alice, "warm")  # both connected
    for msg in FORBIDDEN:
        alice.publish(msg)
    alice.publish(Transcript(session="alice", turn=6, text="my own turn", source="typed"))
    alice.publish(Interrupt(session="alice", turn=6))
    heard = heard_until(server_side, alice, "after")
    assert not [m for m in heard if isinstance(m, (Shutdown, ActorDown)) or m.session == "bob"], heard
    assert [type(m) for m in heard if m.session == "alice" and not isinstance(m, Say)] == [Transcript, Interrupt]


def test_the_servers_own_key_is_not_limited(curve_bus: CurveBus) -> None:  # noqa: F811
    launcher = curve_bus.client("server", curve_bus.address.curve)
    listener = curve_bus.client("server-actor", curve_bus.address.curve, ("",))
    for client in (launcher, listener):
        prove_path(client, timeout_s=5)
    heard_until(listener, launcher, "warm")
    launcher.publish(Shutdown(actors=["llm"], pids=[1]))
    launcher.publish(Transcript(session="bob", turn=7, text="typed on the server for bob", source="typed"))
    heard = heard_until(listener, launcher, "after")
    assert [type(m) for m in heard if not isinstance(m, Say)] == [Shutdown, Transcript]


def test_refusal_reasons() -> None:
    def frames(msg: Message) -> list[bytes]:
        return [bytes(f) for f in encode(msg)]

    assert refusal("server", frames(Shutdown())) == ""
    assert refusal("", frames(Shutdown())) == ""  # no CURVE: a one-machine bus
    assert refusal("alice", frames(Ping(nonce=1))) == ""
    assert "not 'alice'" in refusal("alice", frames(Say(session="bob", text="x", index=0)))
    assert "server's alone" in refusal("alice", frames(Shutdown(session="alice")))
    assert "not a message" in refusal("alice", [b"say", b"\xc1garbage"])
    say = encode(Say(session="alice", text="x", index=0))
    assert refusal("alice", [b"say/alice/", say[1]]) == ""
    assert "is not 'say/alice/'" in refusal("alice", [b"say/bob/", say[1]])  # alice's words on bob's topic
    assert "is not" in refusal("alice", [b"say/*/", say[1]])
    assert "server's alone" in refusal("alice", frames(Heartbeat(session="alice", role="server")))


def test_subscription_refusal_reasons() -> None:
    for allowed in (b"say/hall/", b"ctl.ping/*/", b"stt.final/hall/more", b"x/hall/"):
        assert subscription_refusal("hall", allowed) == "", allowed
    for topic in (b"", b"stt.", b"stt.final", b"stt.final/", b"stt.final/hall", b"ctl.", b"say/hall2/"):
        assert subscription_refusal("server", topic) == ""
        assert subscription_refusal("hall", topic), topic
    assert "not 'hall'" in subscription_refusal("hall", b"stt.final/kitchen/")
    assert "not scoped" in subscription_refusal("hall", b"stt.final/hall")  # would match hall2's
    assert "no key name" in subscription_refusal("", b"say/hall/")


def test_a_satellites_session_is_its_keys_name(curve_bus: CurveBus) -> None:  # noqa: F811
    import pytest

    from launch.config import ConfigError, load_config
    from launch.keys_cmd import bind_session_to_key

    alice = curve_bus.satellites["alice"]
    config = load_config(None, ["button.session=pi"])
    bind_session_to_key(config, alice)  # empty [satellite] session: the key's name, for every edge actor
    assert (config.satellite.session, config.section("button").session,
            config.section("leds").session) == ("alice",) * 3
    with pytest.raises(ConfigError, match="keys add kitchen"):
        bind_session_to_key(load_config(None, ["satellite.session=kitchen"]), alice)
    server = load_config(None, ["satellite.session=kitchen"])
    bind_session_to_key(server, curve_bus.address.curve)  # the server's own key: any session
    assert server.satellite.session == "kitchen"


def test_a_satellite_cannot_read_through_a_topic_it_forged(curve_bus: CurveBus) -> None:  # noqa: F811
    alice = curve_bus.client("alice", curve_bus.satellites["alice"])
    bob = curve_bus.client("bob", curve_bus.satellites["bob"], ("say",))
    server_side = curve_bus.client("server", curve_bus.address.curve)
    for client in (alice, bob, server_side):
        prove_path(client, timeout_s=5)
    heard_until(bob, server_side, "warm", session="bob")
    forged = encode(Say(session="alice", text="HACKED", index=0))[1]
    for topic in (b"say/bob/", b"say/*/"):  # alice's own words, on a topic bob reads
        alice.send_raw([topic, forged])
    assert not [m for m in heard_until(bob, server_side, "after", session="bob") if m.session == "alice"]


@pytest.fixture
def kitchen_and_hall(tmp_path: Path) -> Iterator[CurveBus]:
    with curve_bus_of(tmp_path, ("kitchen", "hall")) as bus:
        yield bus


SNOOPING = [b"", b"stt.", b"stt.final/", b"stt.final/kitchen/", b"stt.final/kitchen", b"llm.token/kitchen/",
            b"say/kitchen/", b"audio.out/kitchen/", b"turn.record/kitchen/", b"ctl.", b"ctl.interrupt/kitchen/",
            b"audio.in/kitchen/", b"player/kitchen/"]
"""What hall's raw socket asks for: everything, every transcript, and kitchen's own topics one by one."""


def test_a_satellite_reads_none_of_another_sessions_turn(kitchen_and_hall: CurveBus, tmp_path: Path) -> None:
    """kitchen's typed turn runs end to end over the CURVE proxy (server actors on the server key, kitchen's
    player and driver on kitchen's), while hall's raw SUB, with hall's key, asks for everything."""
    from actors.llm import LlmActor
    from actors.llm_settings import LlmSettings
    from actors.logger import LoggerActor, LoggerSettings
    from actors.persona import PersonaActor, PersonaSettings
    from actors.player import PlayerActor, PlayerSettings
    from actors.tts import TtsActor, TtsSettings
    from bus.messages import AudioChunk, AudioFrame, LlmDone, LlmToken, PlayerEvent, TurnRecord
    from launch.turns import TurnDriver

    bus = kitchen_and_hall
    server, kitchen, hall = (replace(bus.address, curve=keys) for keys in
                             (bus.address.curve, bus.satellites["kitchen"], bus.satellites["hall"]))
    player = PlayerActor(PlayerSettings(backend="wav", path=str(tmp_path / "{session}-{turn}.wav")))
    player.only_session = "kitchen"
    actors = [(LlmActor(LlmSettings(backend="echo")), server), (PersonaActor(PersonaSettings(style="none")), server),
              (TtsActor(TtsSettings(backend="tone")), server),
              (LoggerActor(LoggerSettings(path=str(tmp_path / "turns.jsonl"))), server), (player, kitchen)]
    spy = bus.ctx.socket(zmq.SUB)  # hall's key, none of BusClient's narrowing: what a rogue hall would do
    spy.setsockopt(zmq.LINGER, 0)
    spy.curve_serverkey, spy.curve_publickey, spy.curve_secretkey = (
        bus.satellites["hall"].server_public, bus.satellites["hall"].public, bus.satellites["hall"].secret)
    with contextlib.ExitStack() as stack:
        stack.callback(spy.close, 0)
        spy.connect(bus.address.sub_addr)
        for topic in [*SNOOPING, b"say/hall/"]:  # its own last: once that one works, the proxy judged them all
            spy.setsockopt(zmq.SUBSCRIBE, topic)
        for actor, address in actors:
            stack.enter_context(ServerStops(actor, address, server))
        everything = bus.client("server-listener", server.curve, ("",))
        hall_client = bus.client("hall", hall.curve, ("",))  # hall as BusClient makes it: its session only
        driver = TurnDriver(kitchen, session="kitchen", source="typed")
        stack.callback(driver.close)
        for client in (everything, hall_client):
            prove_path(client, timeout_s=10)
        wait_for_actors(everything, {a.name for a, _ in actors}, timeout_s=15)
        spied = spy_until(spy, everything, "warm")

        record = driver.typed_turn("hello there", timeout_s=30)
        driver.client.publish(Interrupt(session="kitchen", turn=record["turn"]))
        driver.client.publish(AudioFrame(session="kitchen", turn=record["turn"], seq=0), bytes(640))
        seen = heard_until(everything, driver.client, "kitchen's last", session="kitchen")
        spied += spy_until(spy, everything, "after")  # the proxy passed all of kitchen's messages before this
        hall_heard = heard_until(hall_client, everything, "hall's", session="hall")

    assert record["status"] == "ok" and record["text_in"] == "hello there", record
    assert (tmp_path / f"kitchen-{record['turn']}.wav").exists()
    kitchens = {type(m) for m in seen if m.session == "kitchen"}
    assert kitchens >= {Transcript, LlmToken, LlmDone, Say, AudioChunk, PlayerEvent, TurnRecord, Interrupt,
                        AudioFrame}, kitchens  # the server's side hears every session
    assert not [t for t, m in spied if m.session == "kitchen"], [t for t, _ in spied]
    assert all(t.split(b"/")[1] in (b"hall", b"*") for t, _ in spied), [t for t, _ in spied]
    assert not [m for m in hall_heard if m.session == "kitchen"]  # and its prove_path read the broadcast Pings


class ServerStops(ActorThread):
    """An actor thread stopped by a `Shutdown` on the server's key: the proxy drops a satellite's."""

    def __init__(self, actor: Actor, address: BusAddress, server: BusAddress) -> None:
        super().__init__(actor, address)
        self.server = server

    def stop(self, timeout_s: float = 10.0) -> None:
        self.address = self.server  # the actor read its own address once, when it connected
        super().stop(timeout_s)


def spy_until(spy: zmq.Socket[bytes], server: BusClient, marker: str, timeout_s: float = 10.0
              ) -> list[tuple[bytes, Message]]:
    """(topic, message) of all the raw `spy` receives until the server's marker Say for hall arrives."""
    got: list[tuple[bytes, Message]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.publish(Say(session="hall", text=marker, index=0))
        while spy.poll(50):
            frames = spy.recv_multipart()
            msg = decode(frames).msg
            got.append((frames[0], msg))
            if isinstance(msg, Say) and msg.text == marker:
                return got
    raise AssertionError(f"hall's raw socket never got {marker!r}; got {[t for t, _ in got]}")


def test_every_edge_actors_subscriptions_narrow_to_what_the_proxy_allows() -> None:
    """Each edge actor's topics (and the control ones every actor gets), as a satellite's BusClient narrows
    them: all allowed for its own key, each kind it asked for still heard in its own session, the server's
    heartbeats and the Pings heard too, and none of it allowed for another satellite's key."""
    from actors.base import CONTROL_PREFIX
    from actors.table import ACTORS
    from bus.codec import KINDS, scoped_subscriptions, scoped_topic

    edge = [spec for spec in ACTORS if spec.runs_on == "edge"]
    assert {spec.name for spec in edge} >= {"mic", "player", "button", "leds"}
    for spec in edge:
        prefixes = (*spec.actor_class().topics, CONTROL_PREFIX)  # type: ignore[attr-defined]
        narrowed = [s.encode() for p in prefixes for s in scoped_subscriptions(p, "kitchen")]
        assert all(subscription_refusal("kitchen", s) == "" for s in narrowed), (spec.name, narrowed)
        assert [s for s in narrowed if subscription_refusal("hall", s) == ""] == [
            s for s in narrowed if b"/*/" in s], spec.name  # hall may share only the broadcasts
        wanted = [scoped_topic(k, "kitchen") for p in prefixes for k in KINDS if k.startswith(p)]
        wanted += ["ctl.heartbeat/*/", "ctl.ping/*/"]
        for topic in wanted:
            assert any(topic.encode().startswith(s) for s in narrowed), (spec.name, topic)
