"""The small base every actor builds on, and the loop that runs one.

Lifecycle, each hook with one job: `on_start` loads and warms models (a
failure there exits non-zero), `handle` does the work for one data message
(an exception is logged, the turn is ended with a `TurnError`, and the actor
goes on), `on_idle` runs when nothing arrived for `poll_ms`, `on_stop` frees
devices. Control messages (ping, interrupt, shutdown) are handled ahead of
queued data, also while a handler is busy, through `check_control()`.
"""

from __future__ import annotations

import os
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import structlog

from actors.link import LINK_TIMEOUT_S
from bus.codec import Envelope
from bus.messages import Interrupt, Message, Ping, Ready, Shutdown, TurnError, kinds_of
from bus.privacy import redact
from bus.sockets import BusAddress, BusClient

CONTROL_PREFIX = "ctl."
MAX_PENDING = 1000
"""Data messages `check_control` takes off the socket ahead of time; the rest wait in the socket's queue,
which its high-water mark bounds (a flood must not grow this one without end)."""
CANCELLED_MEMORY = 512
"""How many interrupted turns an actor remembers, to drop their late messages."""


Handler = TypeVar("Handler", bound=Callable[..., None])


def on(*types: type[Message]) -> Callable[[Handler], Handler]:
    """Mark an actor method `(self, msg, payload)` as what handles messages of `types` (see `Actor.handle`)."""

    def mark(method: Handler) -> Handler:
        method.handles = types  # type: ignore[attr-defined]
        return method

    return mark


def topics_of(types: tuple[type[Message], ...]) -> tuple[str, ...]:
    """The topics messages of `types` travel on (a transcript: partial and final)."""
    return tuple(sorted({kind for cls in types for kind in kinds_of(cls)}))


class Actor:
    """Subclass, set `name`, mark a method `@on` each message type it handles, override the hooks you need."""

    name: ClassVar[str] = "actor"
    handlers: ClassVar[dict[type[Message], str]] = {}
    """Message type -> the name of the method that handles it (from `@on`, inherited too)."""
    topics: tuple[str, ...] = ()
    """Data topics (prefixes) this actor subscribes to; control topics come free. By default those of the
    types it handles; an actor that wants fewer (final transcripts only) names them."""
    poll_ms: float = 200.0
    """How long to wait for a message before calling `on_idle`."""
    delivered_when_cancelled: tuple[type[Message], ...] = ()
    """Message types handled even for an interrupted turn (all others of that turn are dropped)."""
    admits: tuple[type[Message], ...] = ()
    """Message types that start this actor's work on a new turn (what `max_queued_turns` counts)."""
    only_session: str = ""
    """Edge actors of a satellite serve only its session; empty serves every session (server, one machine)."""
    replica: tuple[int, int] = (1, 1)
    """(index, count): with several replicas each session is served by exactly one, always the same."""
    link_timeout_s: float = LINK_TIMEOUT_S
    """For actors that watch a link (see `watch_links`)."""
    max_queued_turns: int = 0
    """New turns waiting beyond this are refused as busy, so a satellite hears an earcon, not silence;
    0 is unbounded."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Over the whole MRO, so a mixin in front (tests' `Watched`) neither hides nor drops handlers.
        cls.handlers = {kind: attr for base in reversed(cls.__mro__) for attr, method in vars(base).items()
                        for kind in getattr(method, "handles", ())}
        named = any("topics" in vars(base) for base in cls.__mro__ if base is not Actor)
        if not named and cls.handlers:
            cls.topics = topics_of(tuple(cls.handlers))

    def __init__(self) -> None:
        self.log = structlog.get_logger(self.name)
        self._client: BusClient | None = None
        self._pending: deque[Envelope] = deque()
        self._cancelled: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.stopping = False
        self.serving = False
        """`on_start` has returned: only then does a `Ping` get a `Ready` (a start that waits on the bus, as the
        llm's wait for the tool catalogue does, must not tell the launcher it is ready while it still loads)."""

    # --- hooks -------------------------------------------------------------------
    def on_start(self) -> None:
        """Load and warm models, open devices."""

    def backend(self) -> str:
        """Which backend and model, for `Ready` and the turn record."""
        return ""

    def handle(self, env: Envelope) -> None:
        """Do the work for one data message: the `@on` method of its type; other types are not ours."""
        method = self.handlers.get(type(env.msg))
        if method is not None:
            getattr(self, method)(env.msg, env.payload)

    def on_interrupt(self, msg: Interrupt) -> None:
        """Drop whatever is in flight for `msg.session`/`msg.turn`."""

    def on_idle(self) -> None:
        """Called when nothing arrived for `poll_ms`."""

    def on_control(self, env: Envelope) -> None:
        """Sees every control message after the base handled it (the logger records them)."""

    def on_stop(self) -> None:
        """Close devices and files."""

    def watch_links(self, timeout_s: float) -> None:
        """`[satellite] link_timeout_s`, for actors that notice when the other side goes quiet."""
        self.link_timeout_s = timeout_s

    # --- services for subclasses --------------------------------------------------
    @property
    def bus(self) -> BusClient:
        if self._client is None:
            raise RuntimeError(f"{self.name} is not connected to a bus")
        return self._client

    def publish(self, msg: Message, payload: bytes = b"") -> None:
        self.bus.publish(msg, payload)

    def is_cancelled(self, session: str, turn: int) -> bool:
        return (session, turn) in self._cancelled

    def check_control(self) -> None:
        """Handle waiting control messages now; queue data for later. Call it inside long work."""
        while len(self._pending) < MAX_PENDING and (env := self.bus.recv(timeout_ms=0)) is not None:
            if not self._control(env):
                self._pending.append(env)

    def pending(self, predicate: Callable[[Message], bool]) -> bool:
        """True when a queued data message (see `check_control`) matches `predicate`."""
        return any(predicate(env.msg) for env in self._pending)

    def take_pending(self, predicate: Callable[[Message], bool]) -> Envelope | None:
        """Remove and return the first queued data message matching `predicate` (handled out of turn)."""
        for env in self._pending:
            if predicate(env.msg):
                self._pending.remove(env)
                return env
        return None

    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float,
                 give_up: Callable[[], bool] = lambda: False) -> Envelope | None:
        """The first data message matching `predicate` (handled out of turn), waiting up to `timeout_s` while
        control is handled and other data queued; None on timeout, on stopping, or once `give_up()` is true
        (checked after each control message: an interrupt ends the wait at once)."""
        deadline = time.monotonic() + timeout_s
        while (found := self.take_pending(predicate)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping or give_up():
                return None
            env = self.bus.recv(timeout_ms=1000 * min(left, 0.1))
            if env is not None and not self._control(env):
                self._pending.append(env)
        return found

    def starts_turn(self, msg: Message) -> bool:
        """Whether `msg` starts this actor's work on a new turn (see `admits`)."""
        return isinstance(msg, self.admits)

    def fail_turn(self, about: Message, reason: str) -> None:
        """End `about`'s turn with an error everyone (logger, CLI, player) sees (credentials masked)."""
        reason = redact(reason)
        self.log.warning("turn_failed", session=about.session, turn=about.turn, reason=reason)
        self.publish(TurnError(session=about.session, turn=about.turn, stage=self.name, reason=reason))

    # --- the loop -----------------------------------------------------------------
    def connect(self, address: BusAddress) -> None:
        self._client = BusClient(address, (*self.topics, CONTROL_PREFIX), name=self.name)

    def run(self, address: BusAddress) -> None:
        """Connect, start, announce `Ready`, then serve until a `Shutdown` names this actor."""
        self.connect(address)
        try:
            self.on_start()
            self.serving = True
            self.log.info("ready", backend=self.backend())
            self._announce_ready(nonce=0)
            while not self.stopping:
                env = self._pending.popleft() if self._pending else self.bus.recv(self.poll_ms)
                if env is None:
                    self._safely(self.on_idle)
                elif not self._control(env):
                    self._dispatch(env)
        finally:
            try:
                self.on_stop()
            finally:
                self.bus.close()

    def _announce_ready(self, nonce: int) -> None:
        self.publish(Ready(actor=self.name, pid=os.getpid(), backend=redact(self.backend()), nonce=nonce))

    def _control(self, env: Envelope) -> bool:
        """Handle a control message; False when `env` is data."""
        msg = env.msg
        if not env.topic.startswith(CONTROL_PREFIX):
            return False
        if isinstance(msg, Ping):
            if self.serving:
                self._announce_ready(msg.nonce)
        elif isinstance(msg, Shutdown):
            # A satellite's launcher stops its own actors only, never the server's or another satellite's.
            mine = not self.only_session or msg.session == self.only_session
            # By process id, never by name alone: a second set on the same bus has actors of the same names.
            if mine and os.getpid() in msg.pids and (not msg.actors or self.name in msg.actors):
                self.stopping = True
        elif isinstance(msg, Interrupt) and self.serves(msg.session):
            self._cancelled[(msg.session, msg.turn)] = None
            while len(self._cancelled) > CANCELLED_MEMORY:
                self._cancelled.popitem(last=False)
            self._safely(lambda: self.on_interrupt(msg))
        self._safely(lambda: self.on_control(env))
        return True

    def serves(self, session: str) -> bool:
        """Whether this actor (this satellite's, this replica) handles `session`'s messages."""
        if self.only_session and session != self.only_session:
            return False
        index, count = self.replica
        return count <= 1 or zlib.crc32(session.encode("utf-8")) % count == index - 1

    def _refuse_when_busy(self) -> None:
        """Refuse the newest queued new turns beyond `max_queued_turns` (the oldest are served first)."""
        self.check_control()
        queued = [env for env in self._pending if self.starts_turn(env.msg) and self.serves(env.msg.session)]
        for env in queued[self.max_queued_turns:]:
            self._pending.remove(env)
            self.fail_turn(env.msg, f"busy: {len(queued)} turns are waiting for {self.name}; try again in a moment")

    def _dispatch(self, env: Envelope) -> None:
        msg = env.msg
        if not self.serves(msg.session):
            return
        if self.max_queued_turns and self.starts_turn(msg):
            self._refuse_when_busy()
        if self.is_cancelled(msg.session, msg.turn) and not isinstance(msg, self.delivered_when_cancelled):
            self.log.debug("dropped_cancelled", topic=env.topic, turn=msg.turn)
            return
        self._safely(lambda: self.handle(env), about=msg)

    def _safely(self, hook: Callable[[], None], about: Message | None = None) -> None:
        """Run a hook; an exception ends the turn of the message `about`, never the actor."""
        try:
            hook()
        except Exception as exc:
            self.log.exception("handler_failed", actor=self.name)
            # Never answer a TurnError with a TurnError: an actor that also receives them (the
            # logger) would feed on its own reports forever.
            if about is not None and not isinstance(about, TurnError):
                self.fail_turn(about, f"{self.name} failed: {type(exc).__name__}: {exc}")
