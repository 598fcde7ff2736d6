"""Bad input on the bus, the wire half: the codec and the socket size limit, fuzzed.

The codec must answer garbage with `CodecError` and nothing else (any other exception would
escape `BusClient.recv` and end the actor). Oversized frames never reach Python at all.
The actors' half is tests/test_fuzz.py.
"""


import dataclasses
import time
import typing
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from zmq.utils.monitor import recv_monitor_message

from bus.codec import MAX_HEADER_BYTES, CodecError, Envelope, decode, encode
from bus.handshake import prove_path
from bus.messages import (
    REGISTRY,
    AudioChunk,
    AudioFrame,
    Message,
    Say,
)
from bus.sockets import MAX_FRAME_BYTES, BusAddress, BusClient

MESSAGES = sorted(REGISTRY.values(), key=lambda c: c.WIRE_NAME)


def pack(value: Any) -> bytes:
    packed = msgpack.packb(value, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def decode_or_error(frames: list[bytes]) -> Envelope | CodecError:
    """The envelope or the CodecError; any other exception type fails the test."""
    try:
        env = decode(frames)
    except CodecError as exc:
        return exc
    # "A valid message": it survives another trip through the codec.
    again = decode(encode(env.msg, env.payload, env.topic))
    assert type(again.msg) is type(env.msg) and again.payload == env.payload
    return env


# --- the codec -------------------------------------------------------------------------

valid_headers = st.sampled_from(MESSAGES).map(lambda cls: encode(_example(cls))[1])
frame = st.binary(max_size=1024) | valid_headers | st.sampled_from([b"", b"say", b"\xc1", b"\x91" * 5000])


@settings(max_examples=400, deadline=None)
@given(st.lists(frame, min_size=0, max_size=5))
def test_random_frame_lists(frames: list[bytes]) -> None:
    assert isinstance(decode_or_error(frames), (Envelope, CodecError))


def _example(cls: type[Any]) -> Any:
    firsts = {str: "x", int: 7, float: 1.5, bool: True, list[str]: ["a"], list[int]: [1], dict[str, Any]: {"k": 1},
              list[dict[str, Any]]: [{"k": 1}]}
    hints = typing.get_type_hints(cls)

    def first(kind: Any) -> Any:
        return typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Literal else firsts[kind]

    return cls(**{f.name: first(hints[f.name]) for f in dataclasses.fields(cls)})


WRONG: dict[Any, list[Any]] = {
    str: [7, b"x", None, ["x"]], int: ["7", 1.5, True, None, [1]], float: ["1", True, None, b"\0"],
    bool: [1, 0, "true", None], list[str]: ["a", [1], [b"a"], {"a": 1}], list[int]: [1, ["1"], [1.5], [True]],
    dict[str, Any]: [["k"], "k", 5], list[dict[str, Any]]: [{"k": 1}, ["k"], [{1: 2}]]}


@st.composite
def broken_headers(draw: st.DrawFn) -> tuple[list[bytes], bool | None]:
    """A valid message's frames with one flaw, and whether it must be refused (None: either way)."""
    cls = draw(st.sampled_from(MESSAGES))
    msg = _example(cls)
    head = msgpack.unpackb(encode(msg)[1])
    fields, hints = head["f"], typing.get_type_hints(cls)
    flaw = draw(st.sampled_from(["type", "missing", "extra", "name", "version", "payload", "flip"]))
    refused: bool | None = True
    payload = b"\0\0" if cls.HAS_PAYLOAD else b""
    if flaw == "type":
        name = draw(st.sampled_from(sorted(fields)))
        kind = hints[name]  # a closed set's wrong values: other text and other types
        wrong = [*WRONG[str], "not-one-of-them"] if typing.get_origin(kind) is typing.Literal else WRONG[kind]
        fields[name] = draw(st.sampled_from(wrong))
    elif flaw == "missing":
        name = draw(st.sampled_from(sorted(fields)))
        del fields[name]  # refused only when the field has no default
        refused = name in {f.name for f in dataclasses.fields(cls)
                           if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    elif flaw == "extra":
        fields[draw(st.sampled_from(["colour", "Text", b"text", b"zz"]))] = draw(st.integers(0, 9) | st.binary())
    elif flaw == "name":
        head["t"] = draw(st.sampled_from(["", "nosuch", "SAY", "say ", b"say", 1, None, ["say"]]))
    elif flaw == "version":
        head["v"] = draw(st.sampled_from([0, 2, -1, 2**64 - 1, 1.0, "1", True, None, [1]]))
    elif flaw == "payload":  # a payload on a message without one, or an odd (half-sample) one
        payload = b"\0\0" if not cls.HAS_PAYLOAD else b"\0\0\0"
    header = pack(head)
    if flaw == "flip":
        at = draw(st.integers(0, len(header) - 1))
        header = header[:at] + bytes([draw(st.integers(0, 255))]) + header[at + 1:]
        refused = None  # may still be a valid message: only "CodecError or valid" holds
    return [b"t", header, payload] if payload or cls.HAS_PAYLOAD else [b"t", header], refused


@settings(max_examples=400, deadline=None)
@given(broken_headers())
def test_one_flaw_in_a_valid_header_is_refused(case: tuple[list[bytes], bool | None]) -> None:
    frames, refused = case
    outcome = decode_or_error(frames)
    if refused is not None:  # a missing field that has a default is the one harmless flaw
        assert isinstance(outcome, CodecError if refused else Envelope), outcome


HOSTILE = {
    # msgpack allows str and bytes keys together; sorting them for the message raised TypeError.
    "mixed str and bytes field keys": pack({"v": 1, "t": "say", "f": {"text": "a", "index": 0, "z": 1, b"y": 2}}),
    "extension type": pack({"v": 1, "t": "record", "f": {"record": {"k": msgpack.ExtType(5, b"x")}}}),
    "nested 100k deep": b"\x91" * 100_000,
    "array claiming 4G items": b"\xdd\xff\xff\xff\xff",
    "str claiming 4 GB": b"\xdb\xff\xff\xff\xff",
    "huge version value": pack({"v": "v" * 200_000, "t": "say", "f": {}}),
    "header of zeros over the limit": bytes(MAX_HEADER_BYTES + 1),
}


@pytest.mark.parametrize("header", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_headers_raise_codec_error_with_a_short_reason(header: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode([b"say", header])
    assert len(str(info.value)) < 400  # it is logged once per frame: no megabyte log lines


def test_payload_limits_in_the_codec() -> None:
    big = bytes(8 << 20)
    assert decode(encode(AudioChunk(index=0, sample_rate=16000), big)).payload == big
    with pytest.raises(CodecError, match="odd payload"):
        decode([*encode(AudioFrame(seq=0))[:2], b"\0\0\0"])
    with pytest.raises(CodecError, match="carries no payload"):
        decode([b"say", encode(Say(text="a", index=0))[1], big])
    with pytest.raises(CodecError, match="exceeds"):  # refused where it is made, not at every receiver
        encode(Say(text="x" * MAX_HEADER_BYTES, index=0))
    with pytest.raises(CodecError, match="cannot be packed"):
        encode(Say(text="x", index=2**64))


# --- the socket limit --------------------------------------------------------------------


def test_oversize_frame_through_the_proxy_then_its_sender_reconnects(bus_address: BusAddress) -> None:
    """The proxy refuses the frame and hangs up on its sender, which reconnects and is heard again."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    offender = ctx.socket(zmq.PUB)  # no size limit of its own
    offender.setsockopt(zmq.LINGER, 0)
    offender.connect(bus_address.pub_addr)
    listener = BusClient(bus_address, ("audio.out",), name="listener")
    try:
        prove_path(listener)
        seen = [_deliver(offender, listener, 1)]
        offender.send_multipart(encode(AudioChunk(index=2, sample_rate=16000), bytes(MAX_FRAME_BYTES + 2)))
        seen.append(_deliver(offender, listener, 3))
        seen += [e.msg for e in iter(lambda: listener.recv(timeout_ms=200), None)]
        assert not [m for m in seen if isinstance(m, AudioChunk) and m.index == 2]
        assert listener.dropped == 0
    finally:
        offender.close(0)
        listener.close()


def _deliver(peer: zmq.Socket[bytes], client: BusClient, index: int, timeout_s: float = 5.0) -> Message:
    """Send chunk `index` until `client` receives it (beats slow joiners and reconnects)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        peer.send_multipart(encode(AudioChunk(index=index, sample_rate=16000), b"\1\0"))
        env = client.recv(timeout_ms=50)
        if env is not None and isinstance(env.msg, AudioChunk) and env.msg.index == index:
            return env.msg
    raise AssertionError(f"chunk {index} never arrived")


@pytest.mark.parametrize(("transport", "by_itself"), [("ipc", False), ("tcp", False), ("tcp", True)])
def test_oversize_frame_sent_straight_to_a_client(transport: str, by_itself: bool, tmp_path: Path) -> None:
    """A peer without the limit sends to a BusClient directly: ZeroMQ cuts it off before Python sees it."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    peer = ctx.socket(zmq.PUB)
    peer.setsockopt(zmq.LINGER, 0)
    if transport == "tcp":
        sub_addr = f"tcp://127.0.0.1:{peer.bind_to_random_port('tcp://127.0.0.1')}"
    else:
        sub_addr = f"ipc://{tmp_path}/peer"
        peer.bind(sub_addr)
    events = peer.get_monitor_socket(zmq.EVENT_DISCONNECTED)  # the client's side hanging up shows here
    client = BusClient(BusAddress(pub_addr=f"ipc://{tmp_path}/nowhere", sub_addr=sub_addr), ("audio.out",))
    try:
        _deliver(peer, client, 1)
        peer.send_multipart(encode(AudioChunk(index=2, sample_rate=16000), bytes(MAX_FRAME_BYTES + 2)))
        assert events.poll(10_000), "the limited side never hung up on the oversize frame"
        assert recv_monitor_message(events)["event"] == zmq.EVENT_DISCONNECTED
        if not by_itself:  # what BusClient should do on EVENT_DISCONNECTED; libzmq will not
            client.sub.disconnect(sub_addr)
            client.sub.connect(sub_addr)
        seen = [_deliver(peer, client, 3, timeout_s=3.0)]
        seen += [e.msg for e in iter(lambda: client.recv(timeout_ms=200), None)]
        assert not [m for m in seen if isinstance(m, AudioChunk) and m.index == 2]
        assert client.dropped == 0  # refused by the socket, not by the codec
    finally:
        client.close()
        peer.disable_monitor()
        events.close(0)
        peer.close(0)


# --- the actors ----------------------------------------------------------------------------
