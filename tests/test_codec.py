"""Tests for bus.codec: every registered message round-trips, and garbage only ever raises CodecError."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, Literal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.codec import MAX_HEADER_BYTES, CodecError, Envelope, decode, encode
from bus.messages import (
    PROTOCOL_VERSION,
    REGISTRY,
    ButtonEvent,
    Heartbeat,
    Message,
    PlayerEvent,
    Say,
    Transcript,
    topic_for,
)

PAYLOAD = b"\x01\x02"

# First choice per field type, and a second one for when the first equals the field's default.
_VALUES: dict[Any, tuple[Any, Any]] = {
    str: ("x", "y"),
    int: (7, 8),
    float: (1.5, 2.5),
    bool: (True, False),
    list[str]: (["a"], ["b"]),
    list[int]: ([1], [2]),
    dict[str, Any]: ({"k": 1}, {"k": 2}),
    list[dict[str, Any]]: ([{"k": 1}], [{"k": 2}]),
}


def example(cls: type[Message]) -> Message:
    """An instance of `cls` with a non-default value of the right type in every field."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        choices = typing.get_args(kind)
        first, second = choices[-2:] if typing.get_origin(kind) is Literal else _VALUES[kind]
        values[f.name] = second if f.default is not dataclasses.MISSING and f.default == first else first
    return cls(**values)


def header(t: Any = "say", f: Any = None, v: Any = PROTOCOL_VERSION, **extra: Any) -> bytes:
    fields = {"text": "hi", "index": 3} if f is None else f
    packed = msgpack.packb({"v": v, "t": t, "f": fields, **extra}, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def pack(value: Any) -> bytes:
    packed = msgpack.packb(value, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


@pytest.mark.parametrize("wire_name", sorted(REGISTRY))
def test_every_registered_message_round_trips(wire_name: str) -> None:
    cls = REGISTRY[wire_name]
    msg = example(cls)
    payload = PAYLOAD if cls.HAS_PAYLOAD else b""
    frames = encode(msg, payload)
    assert len(frames) == (3 if cls.HAS_PAYLOAD else 2)
    assert frames[0] == topic_for(msg).encode("ascii")
    env = decode(frames)
    assert env == Envelope(topic=topic_for(msg), msg=msg, payload=payload)
    assert type(env.msg) is cls


def test_examples_use_non_default_values() -> None:
    msg = example(Transcript)
    assert isinstance(msg, Transcript)
    assert msg.final is False and msg.text == "x" and msg.audio_ms == 1.5 and msg.source == "typed"


@pytest.mark.parametrize(("final", "topic"), [(True, "stt.final"), (False, "stt.partial")])
def test_transcript_topic_follows_final(final: bool, topic: str) -> None:
    msg = Transcript(text="hello", final=final)
    assert topic_for(msg) == topic
    env = decode(encode(msg))
    assert env.topic == topic and env.msg == msg


def test_explicit_topic_and_two_frame_payload_message() -> None:
    msg = example(REGISTRY["chunk"])
    env = decode(encode(msg, topic="custom.topic"))
    assert env.topic == "custom.topic" and env.msg == msg and env.payload == b""
    env = decode(encode(msg)[:2])
    assert env.msg == msg and env.payload == b""


def test_encode_refuses_payload_on_message_without_one() -> None:
    with pytest.raises(CodecError, match="carries no payload"):
        encode(Say(text="a", index=0), PAYLOAD)


GARBAGE: dict[str, tuple[list[bytes], str]] = {
    "no frames": ([], "frames"),
    "one frame": ([b"say"], "frames"),
    "four frames": ([b"say", header(), b"", b""], "frames"),
    "header not msgpack": ([b"say", b"\xc1\xc1\xc1"], "not msgpack"),
    "header truncated": ([b"say", header()[:-2]], "not msgpack"),
    "header a list": ([b"say", pack(["v", "t", "f"])], "v, t, f"),
    "header an int": ([b"say", pack(7)], "v, t, f"),
    "missing v": ([b"say", pack({"t": "say", "f": {"text": "a", "index": 1}})], "v, t, f"),
    "missing t": ([b"say", pack({"v": PROTOCOL_VERSION, "f": {"text": "a", "index": 1}})], "v, t, f"),
    "missing f": ([b"say", pack({"v": PROTOCOL_VERSION, "t": "say"})], "v, t, f"),
    "extra header key": ([b"say", header(x=1)], "v, t, f"),
    "wrong version": ([b"say", header(v=PROTOCOL_VERSION + 1)], "protocol version"),
    "unknown wire name": ([b"say", header(t="nosuchmessage")], "unknown message type"),
    "non-str wire name": ([b"say", header(t=5)], "unknown message type"),
    "bytes wire name": ([b"say", header(t=b"say")], "unknown message type"),
    "fields not a map": ([b"say", header(f=["hi", 3])], "not a map"),
    "missing required field": ([b"say", header(f={"text": "hi"})], "index"),
    "unknown extra field": ([b"say", header(f={"text": "hi", "index": 3, "colour": "red"})], "unknown fields"),
    "str where int": ([b"say", header(f={"text": "hi", "index": "3"})], "Say.index"),
    "int where bool": ([b"btn", header(t="btn", f={"pressed": 1})], "ButtonEvent.pressed"),
    "bool where int": ([b"say", header(f={"text": "hi", "index": True})], "Say.index"),
    "bool where float": (
        [b"capend", header(t="capend", f={"frames": 1, "duration_ms": True})], "CaptureEnd.duration_ms"
    ),
    "float where str": ([b"say", header(f={"text": 1.5, "index": 3})], "Say.text"),
    "list of ints where list[str]": (
        [b"ctl.shutdown", header(t="shutdown", f={"actors": [1, 2]})], "Shutdown.actors"
    ),
    "non-str keys in dict field": ([b"turn.record", header(t="record", f={"record": {1: "a"}})], "not msgpack"),
    "payload on message without one": ([b"say", header(), PAYLOAD], "carries no payload"),
    "non-ASCII topic": (["sây".encode(), header()], "ASCII"),
    "header over MAX_HEADER_BYTES": ([b"say", header(f={"text": "x" * MAX_HEADER_BYTES, "index": 1})], "exceeds"),
}


@pytest.mark.parametrize(("frames", "reason"), list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_raises_codec_error(frames: list[bytes], reason: str) -> None:
    with pytest.raises(CodecError, match=re.escape(reason)):
        decode(frames)


def test_garbage_cases_differ_from_a_valid_message_only_in_the_flaw() -> None:
    # The base header the garbage cases mutate is itself valid, so each case fails for its own flaw.
    env = decode([b"say", header()])
    assert env.msg == Say(text="hi", index=3, ts=env.msg.ts)
    assert decode([b"say", header(), b""]).payload == b""


def decode_or_error(frames: list[bytes]) -> Envelope | CodecError:
    """The decoded envelope, or the CodecError; any other exception propagates and fails the test."""
    try:
        return decode(frames)
    except CodecError as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_frames_decode_or_raise_codec_error(frames: list[bytes]) -> None:
    outcome = decode_or_error(frames)
    assert isinstance(outcome, (Envelope, CodecError))
    if isinstance(outcome, Envelope):
        assert len(frames) in (2, 3)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
field_names = sorted({f.name for cls in REGISTRY.values() for f in dataclasses.fields(cls)})
headers = st.one_of(
    st.dictionaries(st.sampled_from(["v", "t", "f"]) | st.text(max_size=3), values, max_size=4),
    st.fixed_dictionaries({
        "v": st.just(PROTOCOL_VERSION) | values,
        "t": st.sampled_from(sorted(REGISTRY)) | values,
        "f": st.dictionaries(st.sampled_from(field_names) | st.text(max_size=4), values, max_size=6),
    }),
)


@settings(max_examples=300, deadline=None)
@given(headers, st.sampled_from(["say", "audio.out", "x"]), st.none() | st.binary(max_size=8))
def test_random_headers_decode_or_raise_codec_error(head: dict[str, Any], topic: str, payload: bytes | None) -> None:
    frames = [topic.encode("ascii"), pack(head)]
    if payload is not None:
        frames.append(payload)
    outcome = decode_or_error(frames)
    assert isinstance(outcome, (Envelope, CodecError))
    if isinstance(outcome, Envelope):
        assert head["t"] == outcome.msg.WIRE_NAME
        assert outcome.topic == topic


@pytest.mark.parametrize(("cls", "field", "value"), [(PlayerEvent, "state", "paused"), (Transcript, "source", "fax"),
                                                     (Heartbeat, "role", "spy"), (ButtonEvent, "source", 1)])
def test_a_value_outside_a_closed_set_is_refused(cls: type[Message], field: str, value: Any) -> None:
    good = example(cls)
    fields = {f.name: getattr(good, f.name) for f in dataclasses.fields(cls)} | {field: value}
    with pytest.raises(CodecError, match=f"{cls.__name__}.{field}"):
        decode([b"x", header(t=cls.WIRE_NAME, f=fields)])
