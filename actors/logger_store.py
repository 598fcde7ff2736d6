"""What the logger keeps on disk: the turn records (rotated by size) and a journal of open turns.

Records: each is one `os.write` of one complete line to a file opened with
O_APPEND, so a killed logger never leaves a torn line; when the next line would
pass `max_bytes` the file is renamed to `.1` (older ones shift up, the oldest
past `backups` goes) and a fresh file is opened.

Journal: every message that can mark a turn is appended (msgpack, header only,
never the PCM) as it arrives, so a logger killed mid-turn restarts knowing what
it had seen. Entries of turns already written are dropped when the journal is
compacted; a torn last entry (killed mid-write) is ignored on replay.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

from bus.codec import CodecError, Envelope, decode, encode
from bus.messages import AudioFrame, Message


class RecordFile:
    """Append-only JSONL with size-based rotation."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append_line(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        size = os.fstat(self.fd).st_size
        if self.max_bytes > 0 and size > 0 and size + len(data) > self.max_bytes:
            self.rotate()
        os.write(self.fd, data)  # one write: a complete line or nothing

    def rotate(self) -> None:
        os.close(self.fd)
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(self.backups, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
                if newer.exists():
                    os.replace(newer, older)
        self.fd = self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Journal:
    """Messages of turns not yet recorded, so a restarted logger can finish their records."""

    def __init__(self, path: str | Path, compact_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self.compact_bytes = compact_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, env: Envelope, received_at: float) -> None:
        msg = env.msg
        if isinstance(msg, AudioFrame) or msg.turn == 0:
            return  # frames carry no timing mark the record uses; turn 0 is no turn
        topic, header = encode(msg, topic=env.topic)[:2]
        os.write(self.fd, msgpack.packb([received_at, topic, header], use_bin_type=True))

    def mark_closed(self, session: str, turn: int) -> None:
        """The turn's record is written: replay must not write it again."""
        os.write(self.fd, msgpack.packb(["closed", session, turn], use_bin_type=True))

    def replay(self) -> tuple[list[tuple[float, Message]], set[tuple[str, int]]]:
        """Messages in the journal (oldest first) and the turns already recorded.

        Garbage entries and a torn tail (the logger was killed mid-write) are skipped.
        """
        seen: list[tuple[float, Message]] = []
        closed: set[tuple[str, int]] = set()
        with open(self.path, "rb") as f:
            unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=16 << 20)
            try:
                for entry in unpacker:
                    if not isinstance(entry, list):
                        continue
                    if len(entry) == 3 and entry[0] == "closed":
                        closed.add((str(entry[1]), int(entry[2])))
                    elif len(entry) == 3 and isinstance(entry[0], float):
                        try:
                            seen.append((entry[0], decode([entry[1], entry[2]]).msg))
                        except (CodecError, TypeError):
                            continue
            except (msgpack.UnpackException, ValueError):
                pass  # torn or corrupt tail: what came before it still counts
        return seen, closed

    def compact_if_idle(self, open_turns: int) -> None:
        """With no turn open, nothing in the journal is needed: start it over once it is big."""
        if open_turns == 0 and os.fstat(self.fd).st_size > self.compact_bytes:
            os.ftruncate(self.fd, 0)

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
