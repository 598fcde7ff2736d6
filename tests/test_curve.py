"""The CURVE-secured bus: a real proxy on 127.0.0.1 TCP with ZAP, real key files, real clients."""

from __future__ import annotations

import argparse
import os
import queue
import socket
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.auth import load_certificate

from bus.handshake import prove_path
from bus.keys import add_client, init_store, install_bundle, load_keys, revoke_client
from bus.messages import Message, Ping, Say
from bus.proxy import run_proxy
from bus.security import BusSecurityError, CurveKeys, Refusal, is_local_endpoint, load_allowlist
from bus.sockets import BusAddress, BusClient
from launch.keys_cmd import register

Context = zmq.Context[zmq.Socket[bytes]]


def free_tcp_address() -> BusAddress:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return BusAddress(pub_addr=f"tcp://127.0.0.1:{ports[0]}", sub_addr=f"tcp://127.0.0.1:{ports[1]}")


def term_with_timeout(ctx: Context, timeout_s: float = 5.0) -> None:
    """Terminate `ctx`; a leaked socket fails the test instead of hanging it."""
    terminator = threading.Thread(target=ctx.term, daemon=True)
    terminator.start()
    terminator.join(timeout_s)
    assert not terminator.is_alive(), "context did not terminate: a socket was left open"


@contextmanager
def running_proxy(address: BusAddress, **kwargs: Any) -> Iterator[None]:
    ctx: Context = zmq.Context()
    ready = threading.Event()
    failure: list[BaseException] = []

    def proxy() -> None:
        try:
            run_proxy(address, ctx, ready, **kwargs)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=proxy, name="test-proxy", daemon=True)
    thread.start()
    try:
        assert ready.wait(5), f"proxy did not bind: {failure}"
        yield
    finally:
        term_with_timeout(ctx)
        thread.join(5)
        assert not thread.is_alive(), "bus proxy did not stop"
        assert not failure, f"proxy failed: {failure}"


@dataclass
class CurveBus:
    store: Path
    address: BusAddress
    """The server's address, with the server pair and the allow-list: the proxy's."""
    ctx: Context
    satellites: dict[str, CurveKeys]
    refusals: queue.Queue[Refusal] = field(default_factory=queue.Queue)
    clients: list[BusClient] = field(default_factory=list)

    def client(self, name: str, keys: CurveKeys | None, topics: tuple[str, ...] = ()) -> BusClient:
        address = BusAddress(self.address.pub_addr, self.address.sub_addr, curve=keys)
        client = BusClient(address, topics, ctx=self.ctx, name=name)
        self.clients.append(client)
        return client

    def wait_refusal(self, match: Callable[[Refusal], bool], timeout_s: float = 5.0) -> Refusal:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                refusal = self.refusals.get(timeout=left)
            except queue.Empty:
                break
            if match(refusal):
                return refusal
        raise AssertionError(f"the proxy refused no such peer within {timeout_s} s")


def make_satellite(store: Path, name: str, where: Path) -> CurveKeys:
    """A satellite set up as a user would: `keys add` on the server, `keys install` of its bundle on it."""
    install_bundle(add_client(store, name), where / name)
    return load_keys(where / name)


@contextmanager
def curve_bus_of(tmp_path: Path, names: tuple[str, ...]) -> Iterator[CurveBus]:
    """A CURVE proxy that allows the satellites `names`. They exist before it starts, as in real use:
    libzmq never retries a handshake that ZAP refused, so a peer that beats a reload stays out."""
    store = tmp_path / "server"
    init_store(store)
    satellites = {name: make_satellite(store, name, tmp_path) for name in names}
    address = replace(free_tcp_address(), curve=load_keys(store))
    bus = CurveBus(store=store, address=address, ctx=zmq.Context(), satellites=satellites)
    try:
        with running_proxy(address, on_refused=bus.refusals.put, reload_s=0.1):
            yield bus
    finally:
        for client in bus.clients:
            client.close()
        term_with_timeout(bus.ctx)


@pytest.fixture
def curve_bus(tmp_path: Path) -> Iterator[CurveBus]:
    """A CURVE proxy that allows alice, bob and carol."""
    with curve_bus_of(tmp_path, ("alice", "bob", "carol")) as bus:
        yield bus


def texts(client: BusClient, window_s: float) -> list[str]:
    """The text of every Say `client` receives within `window_s`."""
    return [m.text for m in heard(client, window_s) if isinstance(m, Say)]


def heard(client: BusClient, window_s: float) -> list[Message]:
    """Every message `client` receives within `window_s`."""
    seen: list[Message] = []
    deadline = time.monotonic() + window_s
    while (left := deadline - time.monotonic()) > 0:
        env = client.recv(timeout_ms=left * 1000)
        if env is not None:
            seen.append(env.msg)
    return seen


def publish_until_received(pub: BusClient, sub: BusClient, text: str, timeout_s: float = 5.0,
                           session: str | None = None) -> None:
    """Re-publish until `sub` hears `text` (beats the slow joiner, and reconnections after a kick). The Say is
    `session`'s, by default the publisher's own: a satellite speaks for its own session only."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(Say(session=session or pub.name, text=text, index=0))
        if text in texts(sub, 0.05):
            return
    raise AssertionError(f"{sub.name} never heard {text!r} from {pub.name}")


def assert_shut_out(friend: BusClient, listener: BusClient, intruder: BusClient, window_s: float = 1.5) -> None:
    """Over `window_s`, the satellite `friend` reaches the server-side `listener` (which hears every session),
    nothing the intruder sends reaches it, and nothing at all reaches the intruder: not even the Pings every
    allowed peer reads."""
    heard_by_listener: list[str] = []
    heard_by_intruder: list[Message] = []
    deadline = time.monotonic() + window_s
    n = 0
    while time.monotonic() < deadline:
        intruder.publish(Say(session=intruder.name, text=f"intruder {n}", index=n))
        friend.publish(Say(session=friend.name, text=f"friend {n}", index=n))
        friend.publish(Ping(nonce=n))
        heard_by_listener += texts(listener, 0.04)
        heard_by_intruder += heard(intruder, 0.01)
        n += 1
    assert n > 10
    assert any(t.startswith("friend") for t in heard_by_listener), "control failed: the allowed path did not work"
    assert not [t for t in heard_by_listener if t.startswith("intruder")]
    assert not heard_by_intruder


def test_allowed_satellites_publish_and_subscribe_over_curve(curve_bus: CurveBus) -> None:
    alice = curve_bus.client("alice", curve_bus.satellites["alice"])
    bob = curve_bus.client("bob", curve_bus.satellites["bob"], ("say",))
    server_side = curve_bus.client("server-actor", curve_bus.address.curve, ("say",))  # an actor beside the proxy
    for client in (alice, bob, server_side):
        prove_path(client, timeout_s=5)
    publish_until_received(alice, server_side, "hello over curve")
    publish_until_received(server_side, bob, "hello from the server host", session="bob")  # bob's own session
    assert alice.pub.getsockopt(zmq.MECHANISM) == zmq.CURVE
    assert bob.sub.getsockopt(zmq.MECHANISM) == zmq.CURVE
    assert curve_bus.refusals.empty()


def test_unknown_key_can_neither_publish_nor_subscribe(curve_bus: CurveBus) -> None:
    alice = curve_bus.client("alice", curve_bus.satellites["alice"])
    listener = curve_bus.client("server-actor", curve_bus.address.curve, ("say",))
    public, secret = zmq.curve_keypair()
    assert curve_bus.address.curve is not None
    stranger = CurveKeys(server_public=curve_bus.address.curve.server_public, public=public, secret=secret,
                         name="mallory")
    mallory = curve_bus.client("mallory", stranger, ("",))
    prove_path(alice, timeout_s=5)
    publish_until_received(alice, listener, "warm-up")
    refusal = curve_bus.wait_refusal(lambda r: r.key == public.decode())
    assert refusal.reason == "key not on the allow-list"
    assert refusal.peer == "127.0.0.1"
    assert_shut_out(alice, listener, mallory)


def test_peer_without_keys_can_neither_publish_nor_subscribe(curve_bus: CurveBus) -> None:
    alice = curve_bus.client("alice", curve_bus.satellites["alice"])
    listener = curve_bus.client("server-actor", curve_bus.address.curve, ("say",))
    plain = curve_bus.client("no-keys", None, ("",))  # loopback, so the client itself is allowed to try
    prove_path(alice, timeout_s=5)
    publish_until_received(alice, listener, "warm-up")
    # Seen by the proxy's socket monitor, never by ZAP: no key was offered.
    refusal = curve_bus.wait_refusal(lambda r: r.key == "")
    assert refusal.reason.startswith(("no CURVE keys", "handshake not completed")), refusal
    assert_shut_out(alice, listener, plain)


def test_revoked_satellite_is_dropped_without_a_proxy_restart(curve_bus: CurveBus) -> None:
    alice = curve_bus.client("alice", curve_bus.satellites["alice"])
    listener = curve_bus.client("server-actor", curve_bus.address.curve, ("say",))
    carol_keys = curve_bus.satellites["carol"]
    carol = curve_bus.client("carol", carol_keys, ("",))
    prove_path(carol, timeout_s=5)
    publish_until_received(carol, listener, "carol is in")

    revoke_client(curve_bus.store, "carol")
    curve_bus.wait_refusal(lambda r: r.key == carol_keys.public.decode())
    publish_until_received(alice, listener, "allowed peers are back")  # they reconnect after the drop
    heard(carol, 0.1)  # whatever reached carol before the drop
    assert_shut_out(alice, listener, carol)


def run_keys(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="rocky-relay")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", *argv])
    code = int(args.func(args))
    out, err = capsys.readouterr()
    return code, out, err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_cli_keeps_secrets_private_and_the_allow_list(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    store, sat = tmp_path / "keys", tmp_path / "pi"
    old_umask = os.umask(0)  # the modes must not depend on a careful umask
    try:
        assert run_keys(capsys, "--dir", str(store), "init")[0] == 0
        assert (mode(store), mode(store / "server.key_secret"), mode(store / "clients")) == (0o700, 0o600, 0o700)
        assert load_certificate(store / "server.key")[1] is None
        secret_before = (store / "server.key_secret").read_bytes()
        code, _, err = run_keys(capsys, "--dir", str(store), "init")
        assert code == 2 and "--force" in err
        assert (store / "server.key_secret").read_bytes() == secret_before

        code, out, _ = run_keys(capsys, "--dir", str(store), "add", "pi-kitchen")
        bundle = store / "bundles" / "pi-kitchen.tar.gz"
        assert code == 0 and str(bundle) in out
        assert mode(bundle) == 0o600
        with tarfile.open(bundle) as tar:
            assert sorted(tar.getnames()) == ["pi-kitchen.key_secret", "server.key"]
        public, secret = load_certificate(store / "clients" / "pi-kitchen.key")
        assert secret is None
        assert run_keys(capsys, "--dir", str(store), "add", "pi-kitchen")[0] == 2
        assert run_keys(capsys, "--dir", str(store), "add", "../evil")[0] == 2
        assert public.decode() in run_keys(capsys, "--dir", str(store), "list")[1]
        server_public = run_keys(capsys, "--dir", str(store), "show-server")[1].strip()

        assert run_keys(capsys, "--dir", str(sat), "install", str(bundle))[0] == 0
        assert (mode(sat), mode(sat / "pi-kitchen.key_secret")) == (0o700, 0o600)
        pi_keys = load_keys(sat)
        assert (pi_keys.name, pi_keys.public, pi_keys.server_public) == ("pi-kitchen", public, server_public.encode())
        assert pi_keys.allow_dir is None
        assert load_allowlist(load_keys(store))[public] == "pi-kitchen"

        assert run_keys(capsys, "--dir", str(store), "revoke", "pi-kitchen")[0] == 0
        assert not (store / "clients" / "pi-kitchen.key").exists() and not bundle.exists()
        assert public not in load_allowlist(load_keys(store))
        assert run_keys(capsys, "--dir", str(store), "revoke", "pi-kitchen")[0] == 2
    finally:
        os.umask(old_umask)


def test_a_secret_open_to_others_is_refused(tmp_path: Path) -> None:
    init_store(tmp_path)
    (tmp_path / "server.key_secret").chmod(0o640)  # readable by a service's group: still private
    assert load_keys(tmp_path).name == "server"
    for open_mode in (0o644, 0o660, 0o604):
        (tmp_path / "server.key_secret").chmod(open_mode)
        with pytest.raises(BusSecurityError, match="chmod 600"):
            load_keys(tmp_path)


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:7750", True), ("tcp://127.9.9.9:1", True), ("tcp://localhost:7750", True),
    ("tcp://[::1]:7750", True), ("ipc:///tmp/bus", True), ("inproc://bus", True),
    ("tcp://192.168.1.20:7750", False), ("tcp://0.0.0.0:7750", False), ("tcp://*:7750", False),
    ("tcp://pi.local:7750", False), ("tcp://127.0.0.1;10.0.0.2:7750", False), ("pgm://eth0;239.1.1.1:5555", False),
])
def test_which_endpoints_stay_on_this_machine(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local


@pytest.mark.parametrize("address", [
    BusAddress("tcp://192.168.1.20:7750", "tcp://192.168.1.20:7751"),
    BusAddress("tcp://*:7750", "tcp://*:7751"),
    BusAddress("tcp://127.0.0.1:7750", "tcp://10.0.0.2:7751"),
])
def test_a_bus_leaving_the_machine_without_keys_is_refused(address: BusAddress) -> None:
    ctx: Context = zmq.Context()
    try:
        with pytest.raises(BusSecurityError, match=r"rocky-relay keys init.*keys_dir"):
            BusClient(address, ctx=ctx, name="insecure")
        with pytest.raises(BusSecurityError, match="rocky-relay keys init"):
            run_proxy(address, ctx)
    finally:
        term_with_timeout(ctx)  # and nothing was left open


def test_loopback_tcp_without_keys_stays_the_zero_config_default() -> None:
    address = free_tcp_address()
    with running_proxy(address):
        ctx: Context = zmq.Context()
        client = BusClient(address, ctx=ctx, name="plain")
        try:
            prove_path(client, timeout_s=5)
            assert client.pub.getsockopt(zmq.MECHANISM) == zmq.NULL
        finally:
            client.close()
            term_with_timeout(ctx)


def test_satellite_keys_cannot_run_the_proxy(tmp_path: Path) -> None:
    init_store(tmp_path / "server")
    address = replace(free_tcp_address(), curve=make_satellite(tmp_path / "server", "pi", tmp_path))
    ctx: Context = zmq.Context()
    try:
        with pytest.raises(BusSecurityError, match="only the server"):
            run_proxy(address, ctx)
    finally:
        term_with_timeout(ctx)
