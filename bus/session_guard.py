"""What a satellite may publish through a CURVE proxy: its own session's messages, and no control of others.

ZAP names each connection by its key (`server`, or the satellite's name from `keys add NAME`, which is also
its session). The proxy forwards a satellite's message only when it carries that session, never a
`Shutdown` or an `ActorDown` (only the server's launcher stops or reports actors), and lets presence messages
(`Ping`, `Ready`) through, which carry no session of their own. The server's key and a bus without CURVE are
not limited. Downstream, every subscriber still receives every topic it asks for: see RELIABILITY.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
import zmq

from bus.codec import CodecError, decode
from bus.messages import ActorDown, Ping, Ready, Shutdown
from bus.security import SERVER

log = structlog.get_logger("bus.session_guard")

PRESENCE = (Ping, Ready)
"""Carry the default session whoever sends them: a satellite's launcher must ask its own actors for them."""
SERVER_ONLY = (Shutdown, ActorDown)
"""Control over actors: a satellite's launcher stops its own processes by signal instead."""
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
    if isinstance(msg, PRESENCE):
        return ""
    if isinstance(msg, SERVER_ONLY):
        return f"{type(msg).__name__} is the server's alone"
    if msg.session != user:
        return f"session {msg.session!r} is not {user!r}'s"
    return ""


class Dropped:
    """Counts what the guard dropped and logs it, at most once every LOG_EVERY_S per peer."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.logged_at: dict[str, float] = {}

    def add(self, user: str, why: str, topic: bytes) -> None:
        self.counts[user] = self.counts.get(user, 0) + 1
        now = time.monotonic()
        if now - self.logged_at.get(user, -LOG_EVERY_S) >= LOG_EVERY_S:
            self.logged_at[user] = now
            log.warning("peer_message_dropped", peer=user, reason=why, topic=topic.decode("ascii", "replace"),
                        dropped_total=self.counts[user])
            if len(self.logged_at) > 10_000:  # names come from the allow-list, but stay bounded anyway
                self.logged_at.clear()
                self.counts.clear()


def forward(xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], control: zmq.Socket[bytes],
            dropped: Dropped | None = None) -> None:
    """A steerable XSUB/XPUB proxy that checks each message's sender: returns when `control` says TERMINATE."""
    dropped = dropped or Dropped()
    poller = zmq.Poller()
    for sock in (xsub, xpub, control):
        poller.register(sock, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if control in ready and control.recv() == b"TERMINATE":
            return
        if xpub in ready:
            _move(xpub, lambda frames: _send(xsub, frames))  # subscriptions, as they are
        if xsub in ready:
            _move(xsub, lambda frames: _pass(frames, xpub, dropped))


def _move(sock: zmq.Socket[bytes], on_message: Callable[[list[zmq.Frame]], None]) -> None:
    for _ in range(BATCH):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        on_message(frames)


def _send(sock: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
    sock.send_multipart(frames, copy=False)


def _pass(frames: list[zmq.Frame], xpub: zmq.Socket[bytes], dropped: Dropped) -> None:
    try:
        user = frames[0].get("User-Id")
    except zmq.ZMQError:
        user = ""  # no ZAP on this connection: not a CURVE peer
    user = user.decode() if isinstance(user, bytes) else str(user or "")
    why = refusal(user, [f.bytes for f in frames]) if user and user != SERVER else ""
    if why:
        dropped.add(user, why, frames[0].bytes)
        return
    xpub.send_multipart(frames, copy=False)
