"""Push-to-talk onto the bus: what every button shares (the Pi's GPIO actor, the terminal, scripts and tests).

A press starts a turn (its id is the press time in ms); pressing again while
the previous turn is still going publishes an interrupt for it first.
"""

from __future__ import annotations

import time

from bus.messages import ButtonEvent, ButtonSource, Interrupt
from bus.sockets import BusClient


def new_turn_id(last: int = 0) -> int:
    """Milliseconds since the epoch: unique across restarts, and strictly increasing here."""
    return max(int(time.time() * 1000), last + 1)


class ButtonPublisher:
    """Publishes press/release for one session and remembers the turn in flight."""

    def __init__(self, client: BusClient, session: str = "local", source: ButtonSource = "keyboard") -> None:
        self.client = client
        self.session = session
        self.source = source
        self.turn = 0
        self.turn_open = False
        """True from a press until the turn's record (or error) arrives; set by the caller."""

    def press(self) -> int:
        if self.turn_open and self.turn:
            self.client.publish(Interrupt(session=self.session, turn=self.turn, reason="barge-in"))
        self.turn = new_turn_id(self.turn)
        self.turn_open = True
        self.client.publish(ButtonEvent(session=self.session, turn=self.turn, pressed=True, source=self.source))
        return self.turn

    def adopt(self, turn: int) -> None:
        """A turn the server started on this session (a ringing timer) is playing: it is the one a press now
        cuts off, as it would this button's own reply."""
        self.turn, self.turn_open = max(turn, self.turn), True

    def release(self) -> None:
        self.client.publish(ButtonEvent(session=self.session, turn=self.turn, pressed=False, source=self.source))
