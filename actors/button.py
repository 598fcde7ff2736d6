"""Push-to-talk buttons: a terminal keyboard, or a script (tests and `talk --input`).

A press starts a turn (its id is the press time in ms); pressing again while
the previous turn is still going publishes an interrupt for it first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from bus.messages import ButtonEvent, Interrupt
from bus.sockets import BusClient


def new_turn_id(last: int = 0) -> int:
    """Milliseconds since the epoch: unique across restarts, and strictly increasing here."""
    return max(int(time.time() * 1000), last + 1)


class ButtonPublisher:
    """Publishes press/release for one session and remembers the turn in flight."""

    def __init__(self, client: BusClient, session: str = "local", source: str = "keyboard") -> None:
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

    def release(self) -> None:
        self.client.publish(ButtonEvent(session=self.session, turn=self.turn, pressed=False, source=self.source))


def keyboard_loop(button: ButtonPublisher, on_turn: Callable[[int], None],
                  stream: TextIO = sys.stdin, prompt: Callable[[str], None] = print) -> None:
    """Enter starts a turn, Enter again ends it; 'q' then Enter quits. Works in any terminal."""
    while True:
        prompt("[Enter] to talk, q to quit")
        line = stream.readline()
        if not line or line.strip().lower() == "q":
            return
        turn = button.press()
        prompt("  listening... [Enter] when done")
        if not stream.readline():
            button.release()
            return
        button.release()
        on_turn(turn)
