"""Timers and alarms that outlive a restart: one private JSON file, rewritten whole on every change.

The store is what the tools actor owns (actors/tools.py): set, cancel, list and what is due. Each timer
remembers the session that set it, so it rings on that satellite only. The file is written to a temporary
name and renamed over the old one (never a torn file), mode 0600; a file that does not parse is set aside
(`.bad`) with a logged reason rather than stopping the actor, since its timers cannot be trusted anyway.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from actors.tools_builtin import ToolError
from bus.privacy import PRIVATE_MODE

MAX_TIMERS = 50
"""Timers per store: a model that loops on set_timer cannot fill the disk."""
MAX_SECONDS = 7 * 24 * 3600
"""The longest timer: a week."""
MAX_LABEL_CHARS = 60


@dataclass(frozen=True)
class Timer:
    id: int
    session: str
    """Which satellite set it (and hears it ring)."""
    label: str
    due: float
    """Wall-clock seconds when it rings."""
    seconds: float
    """How long it was set for."""
    set_in_turn: int = 0


def spoken_duration(seconds: float) -> str:
    """'2 minutes 5 seconds': what a model can read out."""
    seconds = max(0, round(seconds))
    parts = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


def seconds_until(clock_time: Any, now: datetime | None = None) -> float:
    """Seconds from `now` (local) to the next `HH:MM` ("7:30", "19:05", "7:30 pm"): an alarm is a timer."""
    text = str(clock_time).strip().lower().replace(".", "")
    half = text[-2:] if text.endswith(("am", "pm")) else ""
    hour_text, _, minute_text = text.removesuffix(half).strip().partition(":")
    try:
        hour, minute = int(hour_text), int(minute_text or 0)
    except ValueError:
        raise ToolError(f"{clock_time!r} is not a clock time like 07:30") from None
    if half:
        hour = hour % 12 + (12 if half == "pm" else 0)
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ToolError(f"{clock_time!r} is not a clock time like 07:30")
    now = now or datetime.now().astimezone()
    then = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if then <= now:
        then += timedelta(days=1)
    return (then - now).total_seconds()


class TimerStore:
    """The timers, persisted in `path` (0600); `clock` is wall-clock seconds (tests pass their own)."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.timers: dict[int, Timer] = {}
        self.problem = ""
        """Why the file on disk was not used, when it was not."""
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            rows = json.loads(raw)["timers"]
            self.timers = {int(row["id"]): Timer(**row) for row in rows}
        except (ValueError, KeyError, TypeError) as exc:
            self.problem = f"{self.path} is not a timers file ({type(exc).__name__}: {exc}); set aside as .bad"
            self.path.replace(self.path.with_suffix(self.path.suffix + ".bad"))
            self.timers = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
        try:
            os.fchmod(fd, PRIVATE_MODE)
            os.write(fd, json.dumps({"timers": [asdict(t) for t in self.timers.values()]}).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(self.path)

    def add(self, session: str, seconds: Any, label: Any = "", turn: int = 0) -> Timer:
        if isinstance(seconds, str):
            try:
                seconds = float(seconds)
            except ValueError:
                raise ToolError(f"seconds must be a number, not {seconds!r}") from None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= MAX_SECONDS:
            raise ToolError(f"a timer needs a number of seconds between 1 and {MAX_SECONDS}")
        if len(self.timers) >= MAX_TIMERS:
            raise ToolError(f"there are already {MAX_TIMERS} timers; cancel one first")
        label = str(label or "timer").strip()[:MAX_LABEL_CHARS] or "timer"
        timer = Timer(id=max(self.timers, default=0) + 1, session=session, label=label,
                      due=self.clock() + float(seconds), seconds=float(seconds), set_in_turn=turn)
        self.timers[timer.id] = timer
        self._save()
        return timer

    def of_session(self, session: str, label: Any = "") -> list[Timer]:
        """The session's timers, soonest first; only those whose label contains `label` when one is given."""
        wanted = str(label or "").strip().lower()
        mine = [t for t in self.timers.values() if t.session == session and wanted in t.label.lower()]
        return sorted(mine, key=lambda t: t.due)

    def cancel(self, session: str, label: Any = "") -> list[Timer]:
        gone = self.of_session(session, label)
        for timer in gone:
            del self.timers[timer.id]
        if gone:
            self._save()
        return gone

    def remove(self, timer_id: int) -> Timer | None:
        timer = self.timers.pop(timer_id, None)
        if timer is not None:
            self._save()
        return timer

    def due(self) -> list[Timer]:
        """Timers whose time has come (taken out of the store: each rings once)."""
        t = self.clock()
        rung = sorted((timer for timer in self.timers.values() if timer.due <= t), key=lambda timer: timer.due)
        for timer in rung:
            del self.timers[timer.id]
        if rung:
            self._save()
        return rung

    def left(self, timer: Timer) -> float:
        return max(0.0, timer.due - float(self.clock()))
