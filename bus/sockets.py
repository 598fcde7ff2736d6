"""ZeroMQ sockets of the bus: the address and the client every actor uses (the proxy: bus/proxy.py).

Every publisher connects a PUB to the proxy's XSUB side (`pub_addr`) and every
subscriber a SUB to its XPUB side (`sub_addr`), so actors never need to know
where the others run. With `curve` keys the proxy is a CURVE server that lets in
only allow-listed keys (see bus/security.py); a bus that leaves the machine must have them. A satellite's
key reads only its own session there: its client narrows every subscription to that session's topics
(bus/codec.py `wire_topic`), and the proxy refuses it any other (bus/session_guard.py).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
import zmq

from bus.codec import CodecError, Envelope, decode, encode, scoped_subscriptions, wire_topic
from bus.messages import Message
from bus.security import (
    SERVER,
    CurveKeys,
    apply_client_keys,
    is_local_endpoint,
    require_security,
)

log = structlog.get_logger("bus")

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Bigger frames are refused by the socket itself (ZMQ_MAXMSGSIZE), before Python sees them."""

HIGH_WATER_MARK = 10_000
"""Messages queued per peer before PUB/SUB drops: ~3 minutes of 20 ms mic frames."""

# Links that drop (a Pi on Wi-Fi, a server that reboots): without these a TCP peer that vanishes
# without a FIN (power cut, cable, AP roam) keeps its connection "up" for as long as the kernel keeps
# retransmitting (~15 min); a SUB hears nothing and never reconnects, and the proxy keeps up to
# HIGH_WATER_MARK messages queued for the dead subscriber. ZMTP heartbeats (PING/PONG, handled by
# libzmq's I/O thread, so a busy Python actor never misses one) notice the silence in
# HEARTBEAT_TIMEOUT_MS; the connecting side then reconnects and the SUB re-sends its subscriptions.
# Only on links that leave the machine: a local peer that dies closes its socket (the kernel says so at
# once), and one that is only frozen (SIGSTOP, a debugger) must keep its connection, so what it was sent
# waits in the queue. Dropped by a heartbeat, its messages were lost, and libzmq 4.3.5 aborted the thawed
# process (`Assertion failed: !_more (src/fq.cpp:80)`: the pipe ended while it read a multipart message).
HEARTBEAT_IVL_MS = 1000
"""A PING after this long without traffic from the peer."""
HEARTBEAT_TIMEOUT_MS = 3000
"""No traffic at all this long after a PING: the connection is dead, close it (and reconnect)."""
HEARTBEAT_TTL_MS = 3000
"""Asks the peer to drop us after this much silence, even if it set no heartbeat of its own."""
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000
"""Reconnect backoff: 100 ms, doubling up to 1 s: a proxy that is down for long is not hammered by every
satellite at 10 Hz, and after a restart every peer is back within about a second (a 5 s cap left some
actors deaf long enough to miss the supervisor's report of the restart)."""
CONNECT_TIMEOUT_MS = 3000
"""A TCP connect to a host that drops SYNs gives up after this, not the kernel's ~2 min, then retries."""
TCP_KEEPALIVE_IDLE_S = 10
TCP_KEEPALIVE_INTVL_S = 2
TCP_KEEPALIVE_CNT = 3
"""Kernel keepalives too: they also cover a peer still in its handshake (no ZMTP heartbeat yet) and keep
NAT/conntrack entries of an idle link alive. Ignored on ipc://."""

DROP_LOG_FIRST = 5
"""Bad frames logged one by one at the start of a burst; after that only counted."""
DROP_SUMMARY_EVERY_S = 1.0
"""At most one summary line per second while a burst goes on: a flood must not become a log flood."""
DROP_QUIET_S = 10.0
"""A burst is over after this long without a bad frame: the next ones are logged one by one again."""
DROP_TOPICS_KEPT = 8
"""Distinct topics counted per summary; a flood of random topics must not grow the counter."""


@dataclass(frozen=True)
class BusAddress:
    """Where the proxy listens: publishers connect to `pub_addr`, subscribers to `sub_addr`."""

    pub_addr: str = "tcp://127.0.0.1:7750"
    sub_addr: str = "tcp://127.0.0.1:7751"
    curve: CurveKeys | None = None
    """CURVE keys of this peer; required when an address is not loopback (`require_security`)."""
    heartbeats: bool | None = None
    """ZMTP heartbeats on this peer's sockets; None: only when an address leaves the machine (see above)."""

    def wants_heartbeats(self) -> bool:
        if self.heartbeats is not None:
            return self.heartbeats
        return not (is_local_endpoint(self.pub_addr) and is_local_endpoint(self.sub_addr))


def tune(sock: zmq.Socket[bytes], heartbeats: bool) -> None:
    """Options every bus socket gets, client or proxy, before it binds or connects."""
    if heartbeats:
        for option, value in ((zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS), (zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS),
                              (zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)):
            sock.setsockopt(option, value)
    for option, value in ((zmq.LINGER, 0), (zmq.MAXMSGSIZE, MAX_FRAME_BYTES), (zmq.RECONNECT_IVL, RECONNECT_IVL_MS),
                          (zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS), (zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS),
                          (zmq.TCP_KEEPALIVE, 1), (zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S),
                          (zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S), (zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT)):
        sock.setsockopt(option, value)


class DropLog:
    """Counts bad frames and logs them without letting a flood of them flood the log.

    The first `DROP_LOG_FIRST` of a burst are logged one by one (the reason is what a developer needs);
    the rest only as `bad_frames_dropped` summaries, at most one per `DROP_SUMMARY_EVERY_S`, each with
    the count since the last line. `tick()` must be called now and then (BusClient.recv does, also
    when nothing arrives), so the last summary of a burst is written once it ends.
    """

    def __init__(self, client: str, clock: Callable[[], float] = time.monotonic, logger: Any = None) -> None:
        self.client = client
        self.clock = clock
        self.log = logger if logger is not None else log
        self.total = 0
        self.logged_one_by_one = 0
        self.summaries = 0
        self._burst_left = DROP_LOG_FIRST
        self._unlogged = 0
        self._topics: Counter[str] = Counter()
        self._last_reason = ""
        self._last_drop = 0.0
        self._last_summary = 0.0

    def dropped(self, reason: str, topic: str, frames: int) -> None:
        now = self.clock()
        if self._unlogged == 0 and now - self._last_drop >= DROP_QUIET_S:
            self._burst_left = DROP_LOG_FIRST
        self.total += 1
        self._last_drop = now
        if self._burst_left > 0:
            self._burst_left -= 1
            self.logged_one_by_one += 1
            self._last_summary = now  # the first summary comes a full second after the burst began
            self.log.warning("bad_frame_dropped", client=self.client, reason=reason, topic=topic,
                             frames=frames, total=self.total, more_summarised=self._burst_left == 0)
            return
        self._unlogged += 1
        self._last_reason = reason
        if topic in self._topics or len(self._topics) < DROP_TOPICS_KEPT:
            self._topics[topic] += 1
        else:
            self._topics["(other)"] += 1
        self.tick(now)

    def tick(self, now: float | None = None) -> None:
        """Write the summary when one is due."""
        now = self.clock() if now is None else now
        if self._unlogged and now - self._last_summary >= DROP_SUMMARY_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write the summary of what was counted but not logged, now (also on close)."""
        if not self._unlogged:
            return
        self.summaries += 1
        self.log.warning("bad_frames_dropped", client=self.client, count=self._unlogged, total=self.total,
                         topics=dict(self._topics.most_common()), last_reason=self._last_reason)
        self._unlogged = 0
        self._topics.clear()
        self._last_summary = self.clock()


class BusClient:
    """A PUB and a SUB connected to the proxy; not thread-safe (one per thread)."""

    def __init__(self, address: BusAddress, topics: Iterable[str] = (),
                 ctx: zmq.Context[zmq.Socket[bytes]] | None = None, name: str = "client") -> None:
        require_security(address)
        self.name = name
        self.ctx = ctx or zmq.Context.instance()
        self.drops = DropLog(name)
        """Frames received that were not valid messages: counted, logged (rate-limited) and dropped."""
        self.pub = self.ctx.socket(zmq.PUB)
        self.sub = self.ctx.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            tune(sock, address.wants_heartbeats())
            if address.curve is not None:
                apply_client_keys(sock, address.curve)
        self.pub.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self.sub.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        self.pub.connect(address.pub_addr)
        self.sub.connect(address.sub_addr)
        self.scope = address.curve.name if address.curve is not None and address.curve.name != SERVER else None
        """A satellite's key may read only its own session (the key's name): `subscribe` narrows to it."""
        for topic in topics:
            self.subscribe(topic)
        # libzmq never reconnects a session it ended for a protocol error (a frame over MAXMSGSIZE from a
        # peer without the limit): the SUB would be deaf for good. Seeing it hang up, we connect again.
        self._sub_addr = address.sub_addr
        self._hangups = self.sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._reconnected_at = -float("inf")
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self._hangups, zmq.POLLIN)

    def subscribe(self, prefix: str) -> None:
        """Messages whose kind starts with `prefix` (`""`: all); with a satellite's key, of its own session and
        the broadcasts only: the proxy would refuse it a subscription that matches other sessions' topics."""
        for topic in [prefix] if self.scope is None else scoped_subscriptions(prefix, self.scope):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))

    def publish(self, msg: Message, payload: bytes = b"") -> None:
        self.pub.send_multipart(encode(msg, payload, wire_topic(msg)), copy=len(payload) < 64 * 1024)

    def send_raw(self, frames: list[bytes]) -> None:
        """Publish frames as they are (tests and fuzzing use this to send garbage)."""
        self.pub.send_multipart(frames)

    @property
    def dropped(self) -> int:
        """Frames received that were not valid messages, since the client was made."""
        return self.drops.total

    def recv(self, timeout_ms: float | None = None) -> Envelope | None:
        """The next valid message, or None when `timeout_ms` passes; garbage is counted and dropped.

        The timeout holds under a stream of garbage too (None once it passes), so an actor's
        `on_idle` still runs while a rogue publisher floods one of its topics.
        """
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            try:
                # Try first, poll only when empty: under load that halves the cost per message,
                # and a consumer that keeps up is what keeps its queue (and the proxy's) from filling.
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self.drops.tick()
                wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                ready = dict(self.poller.poll(wait))
                if not ready:
                    return None
                if self._hangups in ready:
                    self._reconnect_if_hung_up()
                continue
            try:
                return decode(frames)
            except CodecError as exc:
                self.drops.dropped(str(exc), bytes(frames[0])[:40].decode("ascii", "replace"), len(frames))
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _reconnect_if_hung_up(self) -> None:
        hung_up = False
        while self._hangups.poll(0):
            self._hangups.recv_multipart()
            hung_up = True
        # At most once per RECONNECT_IVL_MAX: a peer that keeps hanging up (a refused key) gets libzmq's own
        # backoff, not a reconnect storm; after an ordinary drop this only makes the first retry sooner.
        now = time.monotonic()
        if hung_up and now - self._reconnected_at >= RECONNECT_IVL_MAX_MS / 1000:
            self._reconnected_at = now
            with contextlib.suppress(zmq.ZMQError):  # libzmq may already have forgotten the endpoint
                self.sub.disconnect(self._sub_addr)
            self.sub.connect(self._sub_addr)
            log.debug("bus_reconnect", client=self.name, endpoint=self._sub_addr)

    def close(self) -> None:
        self.drops.flush()
        self.sub.disable_monitor()
        self._hangups.close(0)
        self.pub.close(0)
        self.sub.close(0)
