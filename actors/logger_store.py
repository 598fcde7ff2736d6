"""What the logger keeps on disk: the turn records (rotated by size) and a journal of open turns.

Records: each is one `os.write` of one complete line to a file opened with
O_APPEND, so a killed logger never leaves a torn line, and a write that did not
fit (a full disk) is cut back off and reported (`StoreWriteError`), so the next
line never lands on a fragment; when the next line would
pass `max_bytes` the file is renamed to `.1` (older ones shift up, the oldest
past `backups` goes) and a fresh file is opened.

Journal: every message that can mark a turn is appended (msgpack, header only,
never the PCM) as it arrives, so a logger killed mid-turn restarts knowing what
it had seen. Entries of turns already written are dropped when the journal is
compacted; a torn last entry (killed mid-write) is ignored on replay.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import msgpack

from bus.codec import CodecError, Envelope, decode, encode
from bus.messages import AudioFrame, Message
from bus.privacy import PRIVATE_MODE


class StoreWriteError(OSError):
    """An append that did not fit (a full disk, a quota): nothing of it was left in the file."""


def append_all(fd: int, data: bytes, what: Path) -> None:
    """Append all of `data` to `fd` (O_APPEND), or nothing: a short or failed write is cut back off, so the
    next append never lands on a torn fragment."""
    start = os.fstat(fd).st_size
    written = 0
    try:
        while written < len(data):
            n = os.write(fd, data[written:])
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += n
    except OSError as exc:
        with contextlib.suppress(OSError):  # else the fragment stays; readers skip a line that does not parse
            os.ftruncate(fd, start)
        raise StoreWriteError(exc.errno or errno.EIO, f"{what}: {exc.strerror or exc} after {written} of "
                              f"{len(data)} bytes (cut back off)") from exc


def _open_private(path: Path, flags: int) -> int:
    """Open with mode 0600, also a file an older version left 0644 (O_CREAT keeps an existing mode)."""
    fd = os.open(path, flags, PRIVATE_MODE)
    os.fchmod(fd, PRIVATE_MODE)
    return fd


class RecordFile:
    """Append-only JSONL with size-based rotation."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = self._open()

    def _open(self) -> int:
        return _open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def append_line(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        size = os.fstat(self.fd).st_size
        if self.max_bytes > 0 and size > 0 and size + len(data) > self.max_bytes:
            self.rotate()
        append_all(self.fd, data, self.path)  # a complete line or nothing

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
        self.fd = _open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)

    def append(self, env: Envelope, received_at: float) -> None:
        msg = env.msg
        if isinstance(msg, AudioFrame) or msg.turn == 0:
            return  # frames carry no timing mark the record uses; turn 0 is no turn
        topic, header = encode(msg, topic=env.topic)[:2]
        append_all(self.fd, msgpack.packb([received_at, topic, header], use_bin_type=True), self.path)

    def mark_closed(self, session: str, turn: int) -> None:
        """The turn's record is written: replay must not write it again."""
        append_all(self.fd, msgpack.packb(["closed", session, turn], use_bin_type=True), self.path)

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


MAX_UNSAVED = 1000
"""Records kept in memory while the disk is full (a few KB each); past this the oldest give way."""


class SavedRecords:
    """Turn records onto disk in order, and the journal told of each once it is there. A record that does not
    fit (a full disk) waits in memory, with any after it, and is tried again: a turn is marked recorded in the
    journal only when its line is on disk, so a logger restarted meanwhile still writes it."""

    def __init__(self, records: RecordFile, journal: Journal) -> None:
        self.records = records
        self.journal = journal
        self.waiting: list[tuple[tuple[str, int], str]] = []
        self.error = ""
        """Why the oldest waiting record could not be written; empty while everything is on disk."""
        self.dropped = 0

    def save(self, key: tuple[str, int], line: str) -> bool:
        """Append `line` (after any still waiting); True once it is on disk, False while it waits."""
        self.waiting.append((key, line))
        if len(self.waiting) > MAX_UNSAVED:
            self.waiting.pop(0)
            self.dropped += 1
        return key in self.retry()

    def retry(self) -> list[tuple[str, int]]:
        """Write what waits, oldest first, until the disk refuses again; the turns written now."""
        written: list[tuple[str, int]] = []
        while self.waiting:
            key, line = self.waiting[0]
            try:
                self.records.append_line(line)
            except StoreWriteError as exc:
                self.error = str(exc)
                return written
            self.waiting.pop(0)
            written.append(key)
            # If the journal does not hear of it, the record is safe all the same; a logger restarted before
            # the next compaction may write it twice.
            with contextlib.suppress(StoreWriteError):
                self.journal.mark_closed(*key)
        self.error = ""
        return written
