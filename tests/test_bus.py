"""Tests for the bus on a real XSUB/XPUB proxy: filtering, garbage, handshakes, frame limits and tap."""

from __future__ import annotations

import tempfile
import time

import pytest
import zmq

from bus.codec import Envelope, decode, encode
from bus.handshake import prove_path, wait_for_actors
from bus.messages import AudioChunk, Message, Say
from bus.sockets import MAX_FRAME_BYTES, BusAddress, BusClient

PCM = bytes(range(256)) * 25  # 6400 bytes: 3200 int16 samples


def drain(client: BusClient, window_s: float) -> list[Envelope]:
    """Every valid message `client` receives within `window_s`."""
    seen: list[Envelope] = []
    deadline = time.monotonic() + window_s
    while (left := deadline - time.monotonic()) > 0:
        env = client.recv(timeout_ms=left * 1000)
        if env is not None:
            seen.append(env)
    return seen


def recv_type(client: BusClient, cls: type[Message], timeout_s: float = 5.0) -> Envelope:
    """The first message of type `cls` (others, such as handshake pings, are skipped)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        env = client.recv(timeout_ms=left * 1000)
        if env is not None and isinstance(env.msg, cls):
            return env
    raise AssertionError(f"no {cls.__name__} within {timeout_s} s")


def publish_until_received(pub: BusClient, sub: BusClient, msg: Message, payload: bytes = b"",
                           timeout_s: float = 5.0) -> Envelope:
    """Re-publish `msg` until `sub` gets a message of its type (beats the slow joiner between clients)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(msg, payload)
        step_end = time.monotonic() + 0.05
        while (left := step_end - time.monotonic()) > 0:
            env = sub.recv(timeout_ms=left * 1000)
            if env is not None and isinstance(env.msg, type(msg)):
                return env
    raise AssertionError(f"{sub.name} never received {type(msg).__name__}")


def test_message_reaches_only_subscribers_of_its_prefix(bus_address: BusAddress) -> None:
    pub = BusClient(bus_address, name="pub")
    wanted = BusClient(bus_address, ("audio.o",), name="wanted")
    other = BusClient(bus_address, ("audio.in",), name="other")
    try:
        for client in (pub, wanted, other):
            prove_path(client, timeout_s=5)
        msg = AudioChunk(index=4, sample_rate=16000, session="s1", turn=99)
        env = publish_until_received(pub, wanted, msg, PCM)
        assert env.topic == "audio.out"
        assert env.msg == msg
        assert env.payload == PCM
        # `other` is connected and working (it proved its path), yet no audio.out ever reaches it.
        assert not [e for e in drain(other, 0.3) if e.topic.startswith("audio.out")]
        assert other.dropped == 0
    finally:
        for client in (pub, wanted, other):
            client.close()


def test_malformed_frame_is_dropped_and_next_message_arrives(bus_address: BusAddress) -> None:
    client = BusClient(bus_address, ("say",), name="garbage")
    try:
        prove_path(client, timeout_s=5)
        client.send_raw([b"say", b"\xc1 not msgpack"])
        client.send_raw([b"say.x", b"\x01", b"\x02", b"\x03"])
        client.publish(Say(text="after the garbage", index=1))
        env = recv_type(client, Say)
        assert env.msg == Say(text="after the garbage", index=1, ts=env.msg.ts)
        assert client.dropped == 2
    finally:
        client.close()


def test_recv_times_out_with_none(bus_address: BusAddress) -> None:
    client = BusClient(bus_address, ("say",), name="idle")
    try:
        prove_path(client, timeout_s=5)
        drain(client, 0.1)  # late duplicate pings from the handshake
        started = time.monotonic()
        assert client.recv(timeout_ms=200) is None
        assert 0.15 <= time.monotonic() - started < 2.0
    finally:
        client.close()


def test_prove_path_succeeds_on_a_live_proxy(bus_address: BusAddress) -> None:
    client = BusClient(bus_address, name="prover")
    try:
        started = time.monotonic()
        prove_path(client, timeout_s=5)
        assert time.monotonic() - started < 5
    finally:
        client.close()


def test_prove_path_times_out_without_a_proxy() -> None:
    with tempfile.TemporaryDirectory(prefix="rr-nobus-") as folder:
        address = BusAddress(pub_addr=f"ipc://{folder}/pub", sub_addr=f"ipc://{folder}/sub")
        client = BusClient(address, name="lonely")
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="proxy") as info:
                prove_path(client, timeout_s=0.5)
            assert time.monotonic() - started < 2.0
            assert "lonely" in str(info.value)
        finally:
            client.close()


def test_wait_for_actors_names_the_missing_actor(bus_address: BusAddress) -> None:
    client = BusClient(bus_address, name="waiter")
    try:
        prove_path(client, timeout_s=5)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="ghost-actor"):
            wait_for_actors(client, {"ghost-actor"}, timeout_s=0.5)
        assert time.monotonic() - started < 2.0
    finally:
        client.close()


def test_oversize_frame_never_reaches_subscribers(bus_address: BusAddress) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(bus_address.pub_addr)
    # A bare SUB without ZMQ_MAXMSGSIZE: whatever it misses, the proxy itself dropped.
    bare = ctx.socket(zmq.SUB)
    bare.setsockopt(zmq.LINGER, 0)
    bare.setsockopt(zmq.SUBSCRIBE, b"audio.out")
    bare.connect(bus_address.sub_addr)
    sender = BusClient(bus_address, name="sender")
    sub = BusClient(bus_address, ("audio.out",), name="sub")

    def bare_indexes(window_s: float) -> list[int]:
        found: list[int] = []
        deadline = time.monotonic() + window_s
        while (left := deadline - time.monotonic()) > 0:
            if bare.poll(max(1, int(left * 1000))):
                msg = decode(bare.recv_multipart()).msg
                assert isinstance(msg, AudioChunk)
                found.append(msg.index)
        return found

    try:
        prove_path(sender, timeout_s=5)
        prove_path(sub, timeout_s=5)
        # First prove the raw socket's path to both subscribers, so the oversize frame is not lost
        # to the slow joiner and the test could not pass for the wrong reason.
        small = AudioChunk(index=1, sample_rate=16000)
        deadline = time.monotonic() + 5
        sub_ok = bare_ok = False
        while not (sub_ok and bare_ok) and time.monotonic() < deadline:
            raw.send_multipart(encode(small, PCM))
            sub_ok = sub_ok or any(isinstance(e.msg, AudioChunk) for e in drain(sub, 0.05))
            bare_ok = bare_ok or 1 in bare_indexes(0.01)
        assert sub_ok and bare_ok, "raw PUB never got through the proxy"
        drain(sub, 0.1)
        bare_indexes(0.1)

        big = encode(AudioChunk(index=2, sample_rate=16000), b"\x00" * (MAX_FRAME_BYTES + 1))
        raw.send_multipart(big, copy=False)
        sender.publish(AudioChunk(index=3, sample_rate=16000), PCM)
        seen = [recv_type(sub, AudioChunk)]
        seen += drain(sub, 0.5)
        indexes = [e.msg.index for e in seen if isinstance(e.msg, AudioChunk)]
        assert 3 in indexes
        assert 2 not in indexes
        assert all(len(e.payload) <= MAX_FRAME_BYTES for e in seen)
        assert sub.dropped == 0
        assert 2 not in bare_indexes(0.3)
    finally:
        raw.close(0)
        bare.close(0)
        sender.close()
        sub.close()

