"""The one place that turns messages into ZeroMQ frames and back.

Wire format, one multipart ZeroMQ message:

    [topic, header, payload?]

`topic` is ASCII (SUB sockets filter on its prefix): on the bus it is `KIND/SCOPE/` (`wire_topic`), the
message's kind (`topic_for`, e.g. `stt.final`) and whose it is: the session, %-escaped, or `*` for what every
peer may read (presence and the server's control). The closing `/` keeps a subscription for `hall` from
matching `hall2`; the server's actors subscribe to bare kinds (`stt.`) and so hear every session, a
satellite's client subscribes to its own scope only, and the CURVE proxy refuses it any other
(bus/session_guard.py). `header` is a msgpack map `{"v": PROTOCOL_VERSION, "t": wire name,
"f": {field: value}}`, and `payload` is raw bytes (PCM) present only for message classes with `HAS_PAYLOAD`.
Anything else raises `CodecError`, which receivers log and drop. A received `Envelope.topic` is the kind alone.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import msgpack

from bus.messages import (
    PROTOCOL_VERSION,
    REGISTRY,
    TOPICS,
    ActorDown,
    Heartbeat,
    Message,
    Ping,
    Ready,
    Shutdown,
    ToolCatalog,
    kinds_of,
    topic_for,
)

MAX_HEADER_BYTES = 256 * 1024
"""A header larger than this is garbage or abuse: no message needs it."""


class CodecError(ValueError):
    """A frame that is not a valid message of this protocol."""


@dataclass(frozen=True)
class Envelope:
    """A received message with its topic and payload."""

    topic: str
    msg: Message
    payload: bytes = b""


BROADCAST = "*"
"""The scope of messages every peer may read. `quote` escapes `*`, so no session's scope is ever this."""
BROADCAST_TYPES = (Ping, Ready, Shutdown, ActorDown, ToolCatalog)
"""Presence (they carry the default session whoever sends them) and the server's control of its actors (the
tools its llm offers included: a satellite may not put schemas into every session's prompt);
the server's heartbeats are broadcast too (`scope_of`). Everything else belongs to its session."""
KINDS = tuple(sorted({kind for cls in TOPICS for kind in kinds_of(cls)}))
"""Every message kind (bare topic) there is."""
BROADCAST_KINDS = frozenset({TOPICS[cls] for cls in BROADCAST_TYPES} | {TOPICS[Heartbeat]})


def scope_of(msg: Message) -> str | None:
    """Whose `msg` is: its session, or None when every peer may read it."""
    if isinstance(msg, BROADCAST_TYPES) or (isinstance(msg, Heartbeat) and msg.role == "server"):
        return None
    return msg.session


@functools.lru_cache(maxsize=4096)
def scoped_topic(kind: str, session: str | None) -> str:
    """`KIND/SESSION/` (the session %-escaped: any text stays ASCII and holds no `/` nor `*`), or `KIND/*/`."""
    return f"{kind}/{BROADCAST if session is None else quote(session, safe='')}/"


def wire_topic(msg: Message) -> str:
    """The topic `msg` travels on over the bus."""
    return scoped_topic(topic_for(msg), scope_of(msg))


def scoped_subscriptions(prefix: str, session: str) -> list[str]:
    """What a client that may read only `session` subscribes to for the kind prefix `prefix`: each kind it
    covers in that session's scope, and in the broadcast scope where that kind is ever broadcast. A prefix
    that already holds a scope (`KIND/SCOPE/...`) is left as it is (the proxy judges it)."""
    if "/" in prefix:
        return [prefix]
    kinds = [k for k in KINDS if k.startswith(prefix)] or [prefix]
    return [scoped_topic(k, s) for k in kinds for s in (session, None) if s is not None or k in BROADCAST_KINDS]


def encode(msg: Message, payload: bytes = b"", topic: str | None = None) -> list[bytes]:
    """Frames for `msg`; `payload` only for message classes that carry one. The topic is `topic`, else the
    bare kind (journal lines, tests); BusClient.publish sends `wire_topic(msg)`."""
    if payload and not msg.HAS_PAYLOAD:
        raise CodecError(f"{type(msg).__name__} carries no payload")
    fields = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    try:
        header = msgpack.packb({"v": PROTOCOL_VERSION, "t": msg.WIRE_NAME, "f": fields}, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:  # an int past 64 bits, an unpackable object
        raise CodecError(f"{type(msg).__name__} cannot be packed: {exc}") from exc
    if len(header) > MAX_HEADER_BYTES:
        # Every receiver would drop it; say so here, where the publisher can end its turn.
        raise CodecError(f"{type(msg).__name__}: header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        frames = [(topic or topic_for(msg)).encode("ascii"), header]
    except UnicodeEncodeError as exc:
        raise CodecError(f"topic {topic!r} is not ASCII") from exc
    if msg.HAS_PAYLOAD:
        frames.append(bytes(payload))
    return frames


def decode(frames: list[bytes]) -> Envelope:
    """The message in `frames`, or `CodecError` saying what is wrong with them."""
    if len(frames) not in (2, 3):
        raise CodecError(f"expected 2 or 3 frames, got {len(frames)}")
    raw_topic, header = bytes(frames[0]), bytes(frames[1])
    try:
        topic = raw_topic.decode("ascii").partition("/")[0]  # the kind: the scope was for the proxy and SUB
    except UnicodeDecodeError as exc:
        raise CodecError("topic is not ASCII") from exc
    if len(header) > MAX_HEADER_BYTES:
        raise CodecError(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        # No message uses msgpack extension types: refuse them rather than hand handlers
        # ExtType objects; a timestamp extension becomes a plain float.
        head = msgpack.unpackb(header, raw=False, strict_map_key=True, ext_hook=_refuse_ext, timestamp=1)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise CodecError(f"header is not msgpack: {exc}") from exc
    if not isinstance(head, dict) or set(head) != {"v", "t", "f"}:
        raise CodecError("header is not a {v, t, f} map")
    if type(head["v"]) is not int or head["v"] != PROTOCOL_VERSION:
        raise CodecError(f"protocol version {_short(head['v'])}, this side speaks {PROTOCOL_VERSION}")
    cls = REGISTRY.get(head["t"]) if isinstance(head["t"], str) else None
    if cls is None:
        raise CodecError(f"unknown message type {_short(head['t'])}")
    if not isinstance(head["f"], dict):
        raise CodecError(f"{cls.__name__}: fields are not a map")
    msg = _build(cls, head["f"])
    payload = bytes(frames[2]) if len(frames) == 3 else b""
    if payload and not cls.HAS_PAYLOAD:
        raise CodecError(f"{cls.__name__} carries no payload")
    if len(payload) % 2:  # every payload is int16 PCM: half a sample would shift all later ones
        raise CodecError(f"{cls.__name__}: odd payload of {len(payload)} bytes is not int16 PCM")
    return Envelope(topic=topic, msg=msg, payload=payload)


def _short(value: Any, limit: int = 80) -> str:
    """A repr short enough to log: a garbage frame must not turn into a megabyte log line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of this protocol")


_FIELD_TYPES: dict[type[Message], dict[str, Any]] = {}


def _field_types(cls: type[Message]) -> dict[str, Any]:
    if cls not in _FIELD_TYPES:
        hints = typing.get_type_hints(cls)
        _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _FIELD_TYPES[cls]


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    types = _field_types(cls)
    unknown = set(values) - set(types)
    if unknown:
        # Keys may mix str and bytes (msgpack allows both), which do not sort together.
        raise CodecError(f"{cls.__name__}: unknown fields {_short(sorted(map(repr, unknown)))}")
    for name, value in values.items():
        if not _matches(value, types[name]):
            raise CodecError(f"{cls.__name__}.{name}: {type(value).__name__} is not {types[name]}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise CodecError(f"{cls.__name__}: {exc}") from exc


def _matches(value: Any, expected: Any) -> bool:
    """Type check for the few field types messages use (bool is not an int here)."""
    origin = typing.get_origin(expected)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(expected)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if origin is Literal:  # a closed set of values (bus/messages.py): anything else is refused
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(expected))
    if expected is Any:
        return True
    raise TypeError(f"codec cannot check field type {expected}")  # a programming error
