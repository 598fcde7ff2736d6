"""What every bus message is: the `Message` base class and the `@message` registry of wire names
and topics. The messages themselves: bus/messages.py (and the modules it names).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

PROTOCOL_VERSION = 1

ButtonSource = Literal["keyboard", "gpio", "script", "typed"]
TranscriptSource = Literal["speech", "typed"]
PlayerState = Literal["started", "finished", "stopped"]
LinkRole = Literal["server", "edge"]
Forget = Literal["all", "last"]
"""The closed sets of values some fields take; the codec refuses any other (bus/codec.py `_matches`)."""

REGISTRY: dict[str, type[Message]] = {}
"""wire name -> message class; filled by the @message decorator."""
TOPICS: dict[type[Message], str] = {}
"""message class -> the kind it travels as on the bus (its topic); filled by the @message decorator."""

M = TypeVar("M", bound="type[Message]")


def message(wire_name: str, topic: str) -> Any:
    """Register a message class under `wire_name` (unique, short, stable), travelling as `topic`: the kind
    subscribers filter on by prefix, so related kinds share a stem (`llm.token`, `llm.done`)."""

    def register(cls: M) -> M:
        if wire_name in REGISTRY:
            raise ValueError(f"wire name {wire_name!r} registered twice")
        cls.WIRE_NAME = wire_name
        REGISTRY[wire_name] = cls
        TOPICS[cls] = topic
        return cls

    return register


def now() -> float:
    """Wall-clock seconds: one clock for every timing mark on a host."""
    return time.time()


@dataclass(frozen=True, kw_only=True)
class Message:
    """Fields every bus message carries."""

    WIRE_NAME: ClassVar[str] = ""
    HAS_PAYLOAD: ClassVar[bool] = False

    session: str = "local"
    """Which satellite (device) the message belongs to."""
    turn: int = 0
    """Which exchange: milliseconds since the epoch at the button press that began it."""
    ts: float = field(default_factory=now)
    """When the publisher created the message (wall-clock seconds)."""
