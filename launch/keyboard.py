"""The terminal's keys for `rocky-relay talk`: one key at a time on a terminal, one line at a time otherwise.

On a terminal the keys need no Enter (cbreak mode: no line editing, no echo; Ctrl-C still interrupts), and
the terminal's own mode is put back however `talk` ends. From a pipe or a file (tests, scripts) each line
is one key: an empty line is Enter, otherwise its first character.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from typing import Any, TextIO

TALK_KEYS = frozenset(" \n\r")
"""Space or Enter: start a turn, and end it (a terminal cannot see a key being released)."""
QUIT_KEYS = frozenset("qQ\x04")
"""q (or Ctrl-D) quits."""


class KeyReader:
    """Keys as they come, with a timeout so one loop can also read the bus."""

    def __init__(self, stream: TextIO = sys.stdin) -> None:
        self.fd = stream.fileno()
        self.single_keys = os.isatty(self.fd)
        """True on a terminal: each key counts at once; False: each line is one key."""
        self._saved: list[Any] | None = None
        self._line = b""

    def __enter__(self) -> KeyReader:
        if self.single_keys:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def read(self, timeout_s: float) -> list[str] | None:
        """The keys pressed within `timeout_s` (often none); None once the input has ended."""
        readable, _, _ = select.select([self.fd], [], [], timeout_s)
        if not readable:
            return []
        data = os.read(self.fd, 1024)
        if not data:
            return None
        if self.single_keys:
            return list(data.decode(errors="replace"))
        *lines, self._line = (self._line + data).split(b"\n")
        return [(line.decode(errors="replace").strip() or "\n")[0] for line in lines]
