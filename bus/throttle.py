"""The proxy gives each publisher a budget, so a flood is dropped at the proxy, not the turn it drowns.

PUB/SUB drops at a full queue, and the full queues were the subscribers': one per subscriber, shared by
every publisher. A rogue publisher flooding a topic made the proxy pass everything on, the slower actors'
queues filled, and the turn's own messages and the heartbeats were dropped there with the flood. The proxy
can tell publishers apart (each connection is its own pipe; libzmq's ZMQ_SRCFD names it on every
message), so it forwards at most `MSGS_PER_S` messages and `BYTES_PER_S` bytes a second from each one
(token buckets, `BURST_S` deep) and drops, counts and logs the rest: a set's own publishers send a few
hundred messages a second at most and never meet the limit; the flooding one loses only its own excess.

Bytes, not messages, bound the memory: the proxy takes in at most `INPUT_HWM` messages per publisher ahead
of reading them (frames are at most 16 MiB: bus/sockets.py MAX_FRAME_BYTES), the rest waits in the
publisher's own memory, and no publisher can make the actors' queues grow by more than its byte budget a
second. A frame bigger than the byte bucket passes only when the bucket is full (then it is in debt).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import structlog
import zmq

log = structlog.get_logger("bus.throttle")

MSGS_PER_S = 5_000.0
BYTES_PER_S = 8.0 * 1024 * 1024
BURST_S = 1.0
"""Bucket depth: this many seconds' worth may pass at once after a quiet spell."""
INPUT_HWM = 4
"""Messages the proxy takes in per publisher ahead of forwarding them (the rest wait in the publisher)."""
BATCH = 1000
"""Messages moved per wake-up before subscriptions are looked at again."""
LOG_EVERY_S = 1.0
FORGET_AFTER_S = 60.0
"""A publisher's bucket is dropped after this long without a message (its connection is likely gone)."""


class Budget:
    """Two token buckets, messages and bytes."""

    def __init__(self, msgs_per_s: float = MSGS_PER_S, bytes_per_s: float = BYTES_PER_S, burst_s: float = BURST_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.msgs_per_s, self.bytes_per_s = msgs_per_s, bytes_per_s
        self.msg_depth, self.byte_depth = msgs_per_s * burst_s, bytes_per_s * burst_s
        self.msgs, self.bytes = self.msg_depth, self.byte_depth
        self.clock = clock
        self.at = clock()

    def allow(self, size: int) -> bool:
        """Whether a message of `size` bytes may pass now (it is charged when it may)."""
        now = self.clock()
        elapsed, self.at = now - self.at, now
        self.msgs = min(self.msg_depth, self.msgs + elapsed * self.msgs_per_s)
        self.bytes = min(self.byte_depth, self.bytes + elapsed * self.bytes_per_s)
        if self.msgs < 1 or self.bytes < min(size, self.byte_depth):
            return False
        self.msgs -= 1
        self.bytes -= size
        return True


class PublisherBudgets:
    """One `Budget` per publisher connection (by source fd), and the log of what was dropped."""

    def __init__(self, make: Callable[[], Budget] = Budget, clock: Callable[[], float] = time.monotonic) -> None:
        self.make, self.clock = make, clock
        self.budgets: dict[int, Budget] = {}
        self.dropped = 0
        """Messages dropped since the start."""
        self._unlogged: Counter[int] = Counter()
        self._unlogged_bytes = 0
        self._next_log = clock() + LOG_EVERY_S
        self._next_forget = clock() + FORGET_AFTER_S

    def admit(self, frames: list[zmq.Frame]) -> bool:
        """Whether the message `frames` may be forwarded; one over its publisher's budget is counted."""
        source = frames[0].get(zmq.SRCFD)
        size = sum(len(frame) for frame in frames)
        budget = self.budgets.get(source)
        if budget is None:
            budget = self.budgets[source] = self.make()
        if budget.allow(size):
            return True
        self.dropped += 1
        self._unlogged[source] += 1
        self._unlogged_bytes += size
        return False

    def tick(self) -> None:
        """Log what was dropped (one line a second at most) and forget buckets of publishers gone quiet."""
        now = self.clock()
        if self._unlogged and now >= self._next_log:
            log.warning("publisher_over_budget_dropped", count=sum(self._unlogged.values()), bytes=self._unlogged_bytes,
                        publishers=len(self._unlogged), worst=self._unlogged.most_common(1)[0][1], total=self.dropped,
                        msgs_per_s=MSGS_PER_S, bytes_per_s=BYTES_PER_S)
            self._unlogged.clear()
            self._unlogged_bytes = 0
            self._next_log = now + LOG_EVERY_S
        if now >= self._next_forget:
            self._next_forget = now + FORGET_AFTER_S
            self.budgets = {fd: b for fd, b in self.budgets.items() if now - b.at < FORGET_AFTER_S}


def forward_fairly(xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], budgets: PublisherBudgets | None = None) -> None:
    """`zmq.proxy(xsub, xpub)` within each publisher's budget, until the context is terminated."""
    budgets = budgets or PublisherBudgets()
    poller = zmq.Poller()
    poller.register(xsub, zmq.POLLIN)
    poller.register(xpub, zmq.POLLIN)
    while True:
        ready = dict(poller.poll(int(1000 * LOG_EVERY_S)))
        budgets.tick()
        if xpub in ready:  # subscriptions go upstream as they are: few, and the bus needs them
            for _ in range(BATCH):
                try:
                    xsub.send_multipart(xpub.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        if xsub not in ready:
            continue
        for _ in range(BATCH):
            try:
                frames = xsub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if budgets.admit(frames):
                xpub.send_multipart(frames, copy=False)
