"""What a satellite may publish and read through a CURVE proxy: its own session, and no control of others.

ZAP names each connection by its key (`server`, or the satellite's name from `keys add NAME`, which is also
its session). Upstream, the proxy forwards a satellite's message only when it carries that session on that
session's topic (bus/codec.py `wire_topic`), never a `Shutdown`, an `ActorDown` or a server heartbeat (only
the server's launcher stops or reports actors, only its logger beats), and lets presence messages (`Ping`,
`Ready`) through, which carry no session of their own. Downstream, the XPUB runs with ZMQ_XPUB_MANUAL:
each subscription is the proxy's to apply, and a satellite's is applied only when it is scoped to its own
session or to the broadcasts (`KIND/hall/...`, `KIND/*/...`); `""`, `stt.` or `stt.final/kitchen/` from
`hall` are refused and logged. The server's key and a bus without CURVE are not limited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import structlog
import zmq

from bus.codec import BROADCAST, CodecError, decode, scope_of, wire_topic
from bus.messages import Ping, Ready, topic_for
from bus.security import SERVER
from bus.throttle import PublisherBudgets

log = structlog.get_logger("bus.session_guard")

PRESENCE = (Ping, Ready)
"""Carry the default session whoever sends them: a satellite's launcher must ask its own actors for them."""
BATCH = 1000
"""Messages moved per wake-up before control messages are looked at again."""
LOG_EVERY_S = 10.0


def refusal(user: str, frames: list[bytes]) -> str:
    """Why a message from the peer `user` may not pass; empty when it may."""
    if not user or user == SERVER:
        return ""
    try:
        msg = decode(frames[:2]).msg  # the header is enough: the payload is never looked at
    except CodecError as exc:
        return f"not a message ({exc})"
    # The bare kind reaches only unscoped subscriptions, which only the server's peers may hold.
    topic = bytes(frames[0]).decode("ascii")  # decode checked that it is
    if topic != wire_topic(msg) and topic != topic_for(msg):
        return f"topic {topic[:60]!r} is not {wire_topic(msg)!r}"
    if isinstance(msg, PRESENCE):
        return ""
    if scope_of(msg) is None:  # every peer would read it: Shutdown, ActorDown, a server heartbeat
        return f"{type(msg).__name__} is the server's alone"
    if msg.session != user:
        return f"session {msg.session!r} is not {user!r}'s"
    return ""


def subscription_refusal(user: str, topic: bytes) -> str:
    """Why the peer `user` may not subscribe to `topic`; empty when it may."""
    if user == SERVER:
        return ""
    if not user:  # every peer of a CURVE proxy has one: ZAP named it
        return "no key name (ZAP user id) on the connection"
    _kind, _, rest = topic.partition(b"/")
    scope, closed, _ = rest.partition(b"/")
    if not closed:  # `stt.`, `stt.final/` or `stt.final/hall` would also match other sessions' topics
        return f"{topic[:60]!r} is not scoped to one session (KIND/{user}/)"
    if scope not in (BROADCAST.encode(), quote(user, safe="").encode()):
        return f"scope {scope[:60]!r} is not {user!r}'s"
    return ""


def judge_subscriptions(xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes]) -> None:
    """Make the proxy decide every subscription (`forward` applies those it allows); call before bind.

    With ZMQ_XPUB_MANUAL libzmq applies none itself and hands each to the proxy with the subscriber's
    User-Id. Upstream the proxy then asks every publisher for everything once, instead of passing the
    subscriptions on: refused ones must not reach the publishers, and an unsubscribe a peer sends for a
    topic it never had must not cancel another peer's subscription there (XSUB counts them per topic,
    across peers). Every message then travels to the proxy even when nobody reads it; the server's actors
    between them read nearly every kind anyway.
    """
    xpub.setsockopt(zmq.XPUB_MANUAL, 1)
    xsub.send(b"\x01")  # subscribe to everything; XSUB sends it to each publisher as it connects

class Dropped:
    """Counts what the guard dropped and logs it as `event`, at most once every LOG_EVERY_S per peer."""

    def __init__(self, event: str = "peer_message_dropped") -> None:
        self.event = event
        self.counts: dict[str, int] = {}
        self.logged_at: dict[str, float] = {}

    def add(self, user: str, why: str, topic: bytes) -> None:
        self.counts[user] = self.counts.get(user, 0) + 1
        now = time.monotonic()
        if now - self.logged_at.get(user, -LOG_EVERY_S) >= LOG_EVERY_S:
            self.logged_at[user] = now
            log.warning(self.event, peer=user, reason=why, topic=topic.decode("ascii", "replace"),
                        dropped_total=self.counts[user])
            if len(self.logged_at) > 10_000:  # names come from the allow-list, but stay bounded anyway
                self.logged_at.clear()
                self.counts.clear()


def forward(xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], control: zmq.Socket[bytes],
            dropped: Dropped | None = None, refused: Dropped | None = None) -> None:
    """A steerable XSUB/XPUB proxy that checks each message's sender and each subscriber's subscriptions
    (set up by `judge_subscriptions`): returns when `control` says TERMINATE."""
    dropped = dropped or Dropped()
    refused = refused or Dropped("peer_subscription_refused")
    budgets = PublisherBudgets()  # a flood is dropped here, not at the actors' queues (bus/throttle.py)

    def within_budget(frames: list[zmq.Frame]) -> None:
        if budgets.admit(frames):
            _pass(frames, xpub, dropped)

    poller = zmq.Poller()
    for sock in (xsub, xpub, control):
        poller.register(sock, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        budgets.tick()
        if control in ready and control.recv() == b"TERMINATE":
            return
        if xpub in ready:
            _move(xpub, lambda frames: _subscribe(frames, xpub, refused))
        if xsub in ready:
            _move(xsub, within_budget)


def _move(sock: zmq.Socket[bytes], on_message: Callable[[list[zmq.Frame]], None]) -> None:
    for _ in range(BATCH):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        on_message(frames)


def _user(frame: zmq.Frame) -> str:
    """The ZAP user id (the key's name) of the connection `frame` came from; empty when there is none."""
    try:
        user = frame.get("User-Id")
    except zmq.ZMQError:
        return ""  # no ZAP on this connection, or an unsubscribe libzmq made itself for a peer that left
    return user.decode() if isinstance(user, bytes) else str(user or "")


def _subscribe(frames: list[zmq.Frame], xpub: zmq.Socket[bytes], refused: Dropped) -> None:
    """Apply an allowed subscription to the peer that sent it (libzmq's last one), refuse the rest.

    Anything else a peer sends upstream (a raw XSUB may send data) goes nowhere.
    """
    data = frames[0].bytes
    if len(frames) != 1 or not data:
        return
    if data[0] == 0:  # always allowed: a peer may only ever drop its own subscriptions
        xpub.setsockopt(zmq.UNSUBSCRIBE, data[1:])
    elif data[0] == 1:
        user = _user(frames[0])
        why = subscription_refusal(user, data[1:])
        if why:
            refused.add(user or "(unknown)", why, data[1:])
        else:
            xpub.setsockopt(zmq.SUBSCRIBE, data[1:])


def _pass(frames: list[zmq.Frame], xpub: zmq.Socket[bytes], dropped: Dropped) -> None:
    user = _user(frames[0])
    why = refusal(user, [f.bytes for f in frames[:2]]) if user and user != SERVER else ""  # not the PCM
    if why:
        dropped.add(user, why, frames[0].bytes)
        return
    xpub.send_multipart(frames, copy=False)
