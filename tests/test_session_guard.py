"""A satellite with a valid key speaks only for its own session through the CURVE proxy, and controls no actor."""

from __future__ import annotations

import time

from bus.codec import encode
from bus.handshake import prove_path
from bus.messages import ActorDown, Interrupt, Message, Ping, Say, Shutdown, Transcript
from bus.session_guard import refusal
from bus.sockets import BusClient
from tests.test_curve import CurveBus, curve_bus  # noqa: F401  (the fixture)


def heard_until(sub: BusClient, pub: BusClient, marker: str, timeout_s: float = 5.0) -> list[Message]:
    """Everything `sub` hears until `pub`'s marker Say arrives (re-sent against the slow joiner). One publisher's
    messages keep their order through the proxy, so what was sent before the first marker arrived first."""
    heard: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(Say(session=pub.name, text=marker, index=0))
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


def test_a_satellites_session_is_its_keys_name(curve_bus: CurveBus) -> None:  # noqa: F811
    import pytest

    from launch.config import ConfigError, load_config
    from launch.keys_cmd import bind_session_to_key

    alice = curve_bus.satellites["alice"]
    config = load_config(None, ["button.session=pi"])
    bind_session_to_key(config, alice)  # empty [satellite] session: the key's name, for every edge actor
    assert (config["satellite"]["session"], config["button"]["session"], config["leds"]["session"]) == ("alice",) * 3
    with pytest.raises(ConfigError, match="keys add kitchen"):
        bind_session_to_key(load_config(None, ["satellite.session=kitchen"]), alice)
    server = load_config(None, ["satellite.session=kitchen"])
    bind_session_to_key(server, curve_bus.address.curve)  # the server's own key: any session
    assert server["satellite"]["session"] == "kitchen"
