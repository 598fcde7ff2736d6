"""The link between a satellite and the server: heartbeats, loss detection, clock offsets.

The server's logger beats once a second (`Heartbeat(role="server")`); each
satellite's player answers every beat at once (`role="edge"`, echoing it).
- A satellite knows the server is gone when beats stop (`LinkWatch`); it ends
  its turn in flight with an earcon and shows the error, while ZeroMQ keeps
  reconnecting with bounded backoff underneath.
- The server knows a satellite is gone when its answers stop, and ends that
  satellite's open turns so their records are written.
- From each beat and its answer the server estimates the satellite's clock
  offset (`ClockOffsets`), so a record mixing Pi and server stamps is consistent.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field

HEARTBEAT_S = 1.0
"""Beat period."""
LINK_TIMEOUT_S = 3.5
"""No beat for this long: the other side is gone (three missed beats plus slack)."""
HOST = socket.gethostname()


@dataclass
class LinkWatch:
    """Whether beats still arrive. It says nothing until the first beat: a bus without a server logger
    (a unit test, a lone actor) is never 'lost'."""

    timeout_s: float = LINK_TIMEOUT_S
    last_beat: float | None = None
    up: bool = False

    def beat(self, at: float) -> bool:
        """A beat arrived; True when this restores a link that was lost."""
        restored = self.last_beat is not None and not self.up
        self.last_beat, self.up = at, True
        return restored

    def poll(self, at: float) -> bool:
        """True once, when the link has just been declared lost."""
        if self.up and self.last_beat is not None and at - self.last_beat > self.timeout_s:
            self.up = False
            return True
        return False


FORGET_LOST_AFTER_S = 600.0
"""A satellite lost this long is forgotten: each closed browser tab is a satellite that never comes back,
and the logger must not keep one watch per tab ever opened."""


def forget_long_lost(watches: dict[str, LinkWatch], at: float, after_s: float = FORGET_LOST_AFTER_S) -> list[str]:
    """Drop the watches of links lost more than `after_s` ago; the sessions dropped."""
    gone = [session for session, watch in watches.items()
            if not watch.up and watch.last_beat is not None and at - watch.last_beat > after_s]
    for session in gone:
        del watches[session]
    return gone


@dataclass
class ClockOffsets:
    """Per satellite session: how far its clock is ahead of this host's, from beat round trips.

    For a beat sent at t0 (server clock), answered at t1 (satellite clock) and received at t3
    (server clock), offset = t1 - (t0 + t3) / 2, with an error of at most half the round trip. The
    sample with the shortest round trip among the recent ones is the most trustworthy.
    """

    keep: int = 16
    samples: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def add(self, session: str, t0: float, t1: float, t3: float) -> None:
        rtt = t3 - t0
        if rtt < 0 or rtt > 10.0:
            return  # a beat from before a restart, or garbage: not a measurement
        self.samples.setdefault(session, deque(maxlen=self.keep)).append((rtt, t1 - (t0 + t3) / 2))

    def offset(self, session: str) -> tuple[float, float] | None:
        """(offset, its uncertainty = rtt/2) in seconds, or None before any sample."""
        if not self.samples.get(session):
            return None
        rtt, offset = min(self.samples[session])
        return offset, rtt / 2

    def correction(self, session: str, floor_s: float = 0.002) -> float:
        """What to subtract from the satellite's stamps: 0 unless the offset is clearly measurable.

        On one host the estimate is noise around zero; correcting by noise would only add jitter.
        """
        found = self.offset(session)
        if found is None:
            return 0.0
        offset, error = found
        return offset if abs(offset) > max(floor_s, error) else 0.0
