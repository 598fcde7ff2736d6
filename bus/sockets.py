"""ZeroMQ sockets of the bus: the XSUB/XPUB proxy and the client every actor uses.

Every publisher connects a PUB to the proxy's XSUB side (`pub_addr`) and every
subscriber a SUB to its XPUB side (`sub_addr`), so actors never need to know
where the others run. With `curve` keys the proxy is a CURVE server that lets in
only allow-listed keys (see bus/security.py); a bus that leaves the machine must have them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
import zmq

from bus.codec import CodecError, Envelope, decode, encode
from bus.messages import Message
from bus.security import (
    ALLOWLIST_RELOAD_S,
    REFUSAL_EVENTS,
    BusSecurityError,
    CurveGuard,
    CurveKeys,
    Refusal,
    apply_client_keys,
    apply_server_keys,
    require_security,
)

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
    curve: CurveKeys | None = None
    """CURVE keys of this peer; required when an address is not loopback (`require_security`)."""


def _tune(sock: zmq.Socket[bytes]) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)


def run_proxy(address: BusAddress, ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
              ready: threading.Event | None = None, *, on_refused: Callable[[Refusal], None] | None = None,
              reload_s: float = ALLOWLIST_RELOAD_S) -> None:
    """Forward every message from publishers to subscribers until the context is terminated.

    With `address.curve` only allow-listed keys get in; `on_refused` hears of every peer turned away
    (from the guard's thread), and the allow-list is re-read every `reload_s`.
    """
    require_security(address)
    ctx = ctx or zmq.Context.instance()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        _tune(sock)
        sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
    try:
        if address.curve is None:
            xsub.bind(address.pub_addr)
            xpub.bind(address.sub_addr)
            if ready is not None:
                ready.set()
            zmq.proxy(xsub, xpub)
        else:
            _run_curve_proxy(address, address.curve, ctx, xsub, xpub, ready, on_refused, reload_s)
    except zmq.ContextTerminated:
        pass
    finally:
        xsub.close(0)
        xpub.close(0)


def _run_curve_proxy(address: BusAddress, keys: CurveKeys, ctx: zmq.Context[zmq.Socket[bytes]],
                     xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], ready: threading.Event | None,
                     on_refused: Callable[[Refusal], None] | None, reload_s: float) -> None:
    tag = f"{id(xsub):x}"
    control = ctx.socket(zmq.PAIR)
    control.setsockopt(zmq.LINGER, 0)
    monitors = [f"inproc://rocky-relay.monitor.{tag}.{side}" for side in ("xsub", "xpub")]
    guard = CurveGuard(ctx, keys, f"inproc://rocky-relay.control.{tag}", monitors, on_refused, reload_s)
    try:
        control.bind(guard.control)
        for sock, endpoint in zip((xsub, xpub), monitors, strict=True):
            apply_server_keys(sock, keys)
            sock.monitor(endpoint, REFUSAL_EVENTS)
        guard.start_and_wait()  # before bind: with no ZAP handler libzmq would let every key in
        xsub.bind(address.pub_addr)
        xpub.bind(address.sub_addr)
        bound = [(sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)) for sock in (xsub, xpub)]
        if ready is not None:
            ready.set()
        while True:
            # Returns only when the guard says TERMINATE: a key was revoked, or the guard is failing.
            zmq.proxy_steerable(xsub, xpub, None, control)
            if guard.failed:
                raise BusSecurityError("the bus guard failed; the proxy stops rather than run unchecked")
            _rebind(bound)
    finally:
        xsub.close(0)  # closed before the guard goes: no moment where a bound socket has no ZAP handler
        xpub.close(0)
        guard.halt()
        control.close(0)
        if guard.ident is not None:
            guard.join(2)


def _rebind(bound: list[tuple[zmq.Socket[bytes], str]], timeout_s: float = 5.0) -> None:
    """Drop every session (unbind ends a listener's connections) so each peer must pass ZAP again."""
    for sock, endpoint in bound:
        sock.unbind(endpoint)
    log.info("proxy_rebinding", reason="allow-list lost a key", endpoints=[e for _, e in bound])
    for sock, endpoint in bound:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                sock.bind(endpoint)
                break
            except zmq.ZMQError as exc:
                # unbind closes the listener on the I/O thread, a moment after it returns.
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


class BusClient:
    """A PUB and a SUB connected to the proxy; not thread-safe (one per thread)."""

    def __init__(self, address: BusAddress, topics: Iterable[str] = (),
                 ctx: zmq.Context[zmq.Socket[bytes]] | None = None, name: str = "client") -> None:
        require_security(address)
        self.name = name
        self.ctx = ctx or zmq.Context.instance()
        self.dropped = 0
        """Frames received that were not valid messages (logged and dropped)."""
        self.pub = self.ctx.socket(zmq.PUB)
        self.sub = self.ctx.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            _tune(sock)
            if address.curve is not None:
                apply_client_keys(sock, address.curve)
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
