"""ZeroMQ sockets of the bus: the XSUB/XPUB proxy and the client every actor uses.

Every publisher connects a PUB to the proxy's XSUB side (`pub_addr`) and every
subscriber a SUB to its XPUB side (`sub_addr`), so actors never need to know
where the others run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
import zmq

from bus.codec import CodecError, Envelope, decode, encode
from bus.messages import Message

log = structlog.get_logger("bus")

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Bigger frames are refused by the socket itself (ZMQ_MAXMSGSIZE), before Python sees them."""

HIGH_WATER_MARK = 10_000
"""Messages queued per peer before PUB/SUB drops: ~3 minutes of 20 ms mic frames."""


@dataclass(frozen=True)
class BusAddress:
    """Where the proxy listens: publishers connect to `pub_addr`, subscribers to `sub_addr`."""

    pub_addr: str = "tcp://127.0.0.1:7750"
    sub_addr: str = "tcp://127.0.0.1:7751"


def _tune(sock: zmq.Socket[bytes]) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)


def run_proxy(address: BusAddress, ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
              ready: threading.Event | None = None) -> None:
    """Forward every message from publishers to subscribers until the context is terminated."""
    ctx = ctx or zmq.Context.instance()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        _tune(sock)
        sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
    try:
        xsub.bind(address.pub_addr)
        xpub.bind(address.sub_addr)
        if ready is not None:
            ready.set()
        zmq.proxy(xsub, xpub)
    except zmq.ContextTerminated:
        pass
    finally:
        xsub.close(0)
        xpub.close(0)


class BusClient:
    """A PUB and a SUB connected to the proxy; not thread-safe (one per thread)."""

    def __init__(self, address: BusAddress, topics: Iterable[str] = (),
                 ctx: zmq.Context[zmq.Socket[bytes]] | None = None, name: str = "client") -> None:
        self.name = name
        self.ctx = ctx or zmq.Context.instance()
        self.dropped = 0
        """Frames received that were not valid messages (logged and dropped)."""
        self.pub = self.ctx.socket(zmq.PUB)
        self.sub = self.ctx.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            _tune(sock)
        self.pub.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self.sub.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        self.pub.connect(address.pub_addr)
        self.sub.connect(address.sub_addr)
        for topic in topics:
            self.subscribe(topic)
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)

    def subscribe(self, prefix: str) -> None:
        self.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))

    def publish(self, msg: Message, payload: bytes = b"") -> None:
        self.pub.send_multipart(encode(msg, payload), copy=len(payload) < 64 * 1024)

    def send_raw(self, frames: list[bytes]) -> None:
        """Publish frames as they are (tests and fuzzing use this to send garbage)."""
        self.pub.send_multipart(frames)

    def recv(self, timeout_ms: float | None = None) -> Envelope | None:
        """The next valid message, or None when `timeout_ms` passes; garbage is logged and dropped."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self.poller.poll(wait):
                return None
            frames = self.sub.recv_multipart()
            try:
                return decode(frames)
            except CodecError as exc:
                self.dropped += 1
                log.warning("bad_frame_dropped", client=self.name, reason=str(exc),
                            topic=bytes(frames[0])[:40].decode("ascii", "replace"), frames=len(frames))

    def close(self) -> None:
        self.pub.close(0)
        self.sub.close(0)
