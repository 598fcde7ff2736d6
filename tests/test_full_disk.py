"""A full disk under the logger: no torn record, the turn still ends (saying its record waits), nothing lost
once there is room again. A real tmpfs of 64 KiB, filled to the last byte, unmounted after."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.logger import LoggerActor, LoggerSettings
from actors.logger_store import RecordFile, StoreWriteError
from bus.handshake import prove_path, wait_for_actors
from bus.messages import PlayerEvent, Transcript, TurnRecord
from bus.sockets import BusAddress, BusClient
from tests.helpers import ActorThread

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs: needs root")


@pytest.fixture
def small_disk() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rr-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(folder)], check=True,
                   timeout=10)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=10)
        folder.rmdir()


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`; the filler, to delete for room."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


def lines(path: Path) -> list[dict[str, object]]:
    """Every line of a record file, each of which must be one whole JSON record."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


def test_a_write_that_does_not_fit_leaves_nothing_behind(small_disk: Path) -> None:
    records = RecordFile(small_disk / "turns.jsonl", max_bytes=0, backups=0)
    try:
        records.append_line(json.dumps({"turn": 1}))
        fill(small_disk)
        size = (small_disk / "turns.jsonl").stat().st_size
        with pytest.raises(StoreWriteError) as caught:
            records.append_line(json.dumps({"turn": 2, "text": "x" * 20_000}))  # more than the page left holds
        assert caught.value.errno == errno.ENOSPC and "cut back off" in str(caught.value)
        assert (small_disk / "turns.jsonl").stat().st_size == size
        assert lines(small_disk / "turns.jsonl") == [{"turn": 1}]
    finally:
        records.close()


def turn(client: BusClient, turn_id: int, text: str) -> None:
    client.publish(Transcript(session="local", turn=turn_id, text=text, source="typed"))
    client.publish(PlayerEvent(session="local", turn=turn_id, state="started"))
    client.publish(PlayerEvent(session="local", turn=turn_id, state="finished"))


def record_of(client: BusClient, turn_id: int, timeout_s: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, TurnRecord) and env.msg.turn == turn_id:
            return env.msg.record
    raise AssertionError(f"no record of turn {turn_id} within {timeout_s:g} s")


def test_turns_during_a_full_disk_end_at_once_and_are_recorded_once_there_is_room(small_disk: Path,
                                                                                  bus_address: BusAddress) -> None:
    path = small_disk / "turns.jsonl"
    logger = LoggerActor(LoggerSettings(path=str(path)))
    client = BusClient(bus_address, ("turn.record",), name="disk-test")
    try:
        with ActorThread(logger, bus_address):
            prove_path(client)
            wait_for_actors(client, {"logger"}, timeout_s=15)
            turn(client, 1_000, "before the disk filled")
            assert "not_saved" not in record_of(client, 1_000)
            filler = fill(small_disk)
            for turn_id in (2_000, 3_000):
                turn(client, turn_id, "y" * 6_000)  # its record is bigger than any space left
                record = record_of(client, turn_id)  # the turn ends now, not at turn_timeout_s
                assert "No space left on device" in str(record["not_saved"]), record
            assert [r["turn"] for r in lines(path)] == [1_000]  # nothing torn, nothing half-appended
            filler.unlink()
            deadline = time.monotonic() + 15
            while [r["turn"] for r in lines(path)] != [1_000, 2_000, 3_000] and time.monotonic() < deadline:
                client.recv(timeout_ms=200)  # waiting for the logger's retry, on a deadline
            assert [r["turn"] for r in lines(path)] == [1_000, 2_000, 3_000]
            assert all("not_saved" not in r for r in lines(path))
    finally:
        client.close()
