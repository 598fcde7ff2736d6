"""The terminal as a push-to-talk button (`rocky-relay talk` without --input): Enter to talk, Enter to send."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from bus.push_to_talk import ButtonPublisher


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
