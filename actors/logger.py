"""The logger: listens to everything and writes one JSONL record per turn.

A turn's record is written when its playback finishes or stops, when a stage
reports a `TurnError`, or after `turn_timeout_s` without news (status
"timeout"). Each record is one `os.write` of one complete line to a file
opened for appending, so a killed logger never leaves a torn line. The record
is also published on `turn.record` for whoever started the turn.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from actors.base import Actor
from actors.timing import TurnTimeline
from bus.codec import Envelope
from bus.messages import Message, Ready, TurnRecord, now


@dataclass
class LoggerSettings:
    path: str = "logs/turns.jsonl"
    """Where turn records are appended."""
    turn_timeout_s: float = 120.0
    """A turn with no news for this long is written out as timed out."""


class LoggerActor(Actor):
    name: ClassVar[str] = "logger"
    topics = ("",)  # everything
    poll_ms = 1000.0
    delivered_when_cancelled = (Message,)  # an interrupted turn still gets its record

    def __init__(self, settings: LoggerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.turns: dict[tuple[str, int], TurnTimeline] = {}
        self.closed: dict[tuple[str, int], None] = {}
        self.backends: dict[str, str] = {}
        self.fd = -1

    def on_start(self) -> None:
        path = Path(self.settings.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def backend(self) -> str:
        return f"jsonl {self.settings.path}"

    def on_control(self, env: Envelope) -> None:
        msg = env.msg
        if isinstance(msg, Ready) and msg.backend:
            self.backends[msg.actor] = msg.backend
        elif msg.turn != 0:  # an interrupt belongs to its turn's record
            self.handle(env)

    def handle(self, env: Envelope) -> None:
        msg = env.msg
        if msg.turn == 0 or isinstance(msg, TurnRecord):
            return
        key = (msg.session, msg.turn)
        if key in self.closed:
            return
        timeline = self.turns.get(key)
        if timeline is None:
            timeline = self.turns[key] = TurnTimeline(session=msg.session, turn=msg.turn)
        timeline.observe(msg, now())
        if timeline.complete:
            self._write(key, timeline.record(self.backends))

    def on_idle(self) -> None:
        cutoff = now() - self.settings.turn_timeout_s
        for key, timeline in list(self.turns.items()):
            if timeline.last_activity < cutoff:
                self._write(key, timeline.record(self.backends, timed_out=True))

    def _write(self, key: tuple[str, int], record: dict[str, Any]) -> None:
        self.turns.pop(key, None)
        self.closed[key] = None
        while len(self.closed) > 1024:
            self.closed.pop(next(iter(self.closed)))
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
        self.log.info("turn_recorded", turn=key[1], status=record["status"],
                      release_to_first_audio_ms=record["release_to_first_audio_ms"])
        self.publish(TurnRecord(session=key[0], turn=key[1], record=record))

    def on_stop(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
