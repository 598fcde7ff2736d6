"""The control messages (ctl.*): readiness, interrupts, clean stops, deaths and heartbeats. Importable from
bus.messages with every other message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.message_base import LinkRole, Message, message


@message("ping", topic="ctl.ping")
@dataclass(frozen=True, kw_only=True)
class Ping(Message):
    """Asks every actor to answer with `Ready`; also measures the bus."""

    nonce: int = 0
    """Echoed back in the answer."""


@message("ready", topic="ctl.ready")
@dataclass(frozen=True, kw_only=True)
class Ready(Message):
    """An actor is connected, has loaded its models and can work."""

    actor: str
    """The actor's name."""
    pid: int
    """Its process id."""
    backend: str = ""
    """Which backend and model it runs, e.g. 'faster-whisper tiny.en'."""
    nonce: int = 0
    """The `Ping` nonce this answers (0 when announced unasked)."""


@message("interrupt", topic="ctl.interrupt")
@dataclass(frozen=True, kw_only=True)
class Interrupt(Message):
    """Stop everything for this session and turn (barge-in)."""

    reason: str = "barge-in"
    """Why."""


@message("shutdown", topic="ctl.shutdown")
@dataclass(frozen=True, kw_only=True)
class Shutdown(Message):
    """The actors named (or all, when empty) whose process ids are listed stop cleanly."""

    actors: list[str] = field(default_factory=list)
    """Names of the actors to stop; empty means every actor."""
    pids: list[int] = field(default_factory=list)
    """Process ids of the actors to stop: an actor stops only when its own is listed, so a launcher stops its
    own processes and never another set's actors of the same names on a shared bus."""


@message("down", topic="ctl.down")
@dataclass(frozen=True, kw_only=True)
class ActorDown(Message):
    """The supervisor saw an actor die; turns in flight through it cannot finish."""

    actor: str
    exit_code: int
    restart_in_s: float
    """When the supervisor starts it again."""
    died_at: float = 0.0
    """Wall-clock seconds when the supervisor saw it die: turns begun after that are not its victims."""


@message("beat", topic="ctl.heartbeat")
@dataclass(frozen=True, kw_only=True)
class Heartbeat(Message):
    """'I am here', once a second, from the server (role "server") and from each satellite (role "edge").

    A satellite answers a server beat at once, echoing its `seq` and `ts` (`echo_ts`), and stamps its own
    `ts`: from the four times the server estimates the satellite's clock offset (as NTP does).
    """

    role: LinkRole
    """Which side beats: the server's logger or a satellite's player."""
    host: str = ""
    seq: int = 0
    echo_seq: int = -1
    """The server beat this answers (-1: none)."""
    echo_ts: float = 0.0
    """That beat's `ts`, as the server stamped it."""
