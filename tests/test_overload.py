"""Overload: a rogue publisher floods a launched set mid-turn (bad frames and dead links: test_bus_drops.py).

The rogue is its own process (`flood`, run with `python -c`), publishing as fast as one Python loop can
for FLOOD_S seconds, while a spoken turn runs. The proxy gives every publisher a budget (bus/throttle.py:
MSGS_PER_S messages and BYTES_PER_S bytes a second) and drops the rest of the rogue's flood itself, so the
actors' queues stay short and the turn's own messages and the heartbeats are not dropped with the flood.

Memory is bounded in bytes: the proxy takes in at most INPUT_HWM messages of at most MAX_FRAME_BYTES from
the rogue ahead of reading them (4 x 16 MiB), and passes on at most BYTES_PER_S of it a second (plus one
second's burst), which is all an actor can be left holding if it did not read at all during the flood:
(1 + FLOOD_S) x 8 MiB = 40 MiB. Hence the bounds below, with room for allocator slack. A watchdog stops
the rogue before it hurts the machine (the machine is shared) should the bound break anyway.

Asserted for every kind of flood: no actor dies or restarts, the turn during the flood is ok, memory stays
within the bounds, bad frames are counted and logged a few lines a second, the proxy logged what it dropped,
and the next turn is ordinary.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
import zmq

from bus.codec import encode
from bus.handshake import prove_path
from bus.messages import AudioFrame, Transcript
from bus.push_to_talk import ButtonPublisher
from bus.sockets import (
    DROP_LOG_FIRST,
    MAX_FRAME_BYTES,
    BusAddress,
    BusClient,
)
from launch.config import Config, bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "launch" / "samples" / "prompt-1s.wav"
FLOOD_S = 4.0
HOLD_S = 1.5
"""How long the simulated person holds the button over the 1 s question (the stimulus, not a wait)."""
MIB = 1024 * 1024
ACTOR_BOUND = 100 * MIB
PROXY_BOUND = 200 * MIB
WATCHDOG = 1536 * MIB
"""The whole set grown past this: the rogue is killed at once (the machine is shared)."""
RECEIVERS = {"garbage": ("logger", "mic", "vad", "stt", "llm", "persona", "tts", "player"),
             "big": ("vad", "stt")}  # the logger does not take mic frames
"""Who subscribes to the flooded topics, so must have counted and logged the bad frames."""
SUBSCRIBED = (b"audio.in", b"audio.in.end", b"vad", b"button", b"stt.final", b"llm.token", b"llm.done", b"say",
              b"audio.out", b"player", b"turn.error", b"ctl.ping", b"ctl.interrupt")
"""Topics the actors subscribe to: garbage on them reaches every actor (ctl. reaches all)."""


def rogue_frames(kind: str) -> list[list[bytes]]:
    if kind == "garbage":
        bad_headers = [b"\xc1 not msgpack", msgpack.packb({"v": 99, "t": "say", "f": {}}),
                       msgpack.packb({"v": 1, "t": "no-such-type", "f": {}}), msgpack.packb([1, 2, 3])]
        return [[topic, header] for topic in SUBSCRIBED for header in bad_headers] + [[b"say", b"a", b"b", b"c"]]
    if kind == "valid":
        # Valid, but for a session nobody uses, on topics that cost work without spoofing a reply: partial
        # transcripts (only listeners of everything take them) and silent mic frames (vad, stt, logger).
        # Not valid Pings: each would make all nine actors answer.
        return [encode(Transcript(session="rogue", turn=1, text="flood " * 8, final=False)),
                encode(AudioFrame(session="rogue", turn=1, seq=0), bytes(640))]
    if kind == "big":
        return [[b"audio.in", b"\xc1 big", bytes(MAX_FRAME_BYTES - 4096)]]
    raise ValueError(kind)


def flood(pub_addr: str, sub_addr: str, kind: str, seconds: float) -> None:
    """The rogue publisher (its own process): as fast as it can for `seconds`, then prints what it sent."""
    client = BusClient(BusAddress(pub_addr=pub_addr, sub_addr=sub_addr), name="rogue")
    try:
        prove_path(client)  # so the flood is not lost to the slow joiner
        client.sub.setsockopt(zmq.UNSUBSCRIBE, b"ctl.ping")  # its own ctl.ping garbage must not queue here
        batch = rogue_frames(kind)
        print("flooding", flush=True)
        sent, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            for frames in batch:
                client.pub.send_multipart(frames)  # copying, as a real rogue would
            sent += len(batch)
        print(json.dumps({"sent": sent, "seconds": seconds}), flush=True)
    finally:
        client.close()


@dataclass
class FloodedSet:
    supervisor: Supervisor
    config: Config
    folder: Path


@pytest.fixture(scope="module")
def flooded() -> Iterator[FloodedSet]:
    folder = Path(tempfile.mkdtemp(prefix="rr-overload-"))
    config = load_config(None, [
        f"bus.pub=ipc://{folder}/pub", f"bus.sub=ipc://{folder}/sub", "stt.backend=fixed", "llm.backend=echo",
        "tts.backend=tone", "mic.backend=wav", f"mic.path={PROMPT}", "mic.realtime=false", "player.backend=wav",
        f"player.path={folder}/reply.wav", f"logger.path={folder}/turns.jsonl"])
    supervisor = Supervisor(config, config.sets["local"], log_dir=folder / "actors")
    try:
        supervisor.start(timeout_s=60)
        yield FloodedSet(supervisor, config, folder)
    finally:
        supervisor.stop()
        shutil.rmtree(folder, ignore_errors=True)


class RssWatch(threading.Thread):
    """Peak RSS of each process while the flood runs; kills the rogue if one runs away."""

    def __init__(self, pids: dict[str, int], rogue: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start_rss = {name: p.memory_info().rss for name, p in self.procs.items()}
        self.peak = dict(self.start_rss)
        self.rogue = rogue
        self.tripped = ""
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            now = dict(self.start_rss)
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    now[name] = proc.memory_info().rss
                self.peak[name] = max(self.peak[name], now[name])
            total = sum(now.values()) - sum(self.start_rss.values())
            if total > WATCHDOG and not self.tripped:
                self.tripped = f"the set grew {total // MIB} MiB, past the watchdog's {WATCHDOG // MIB} MiB"
                self.rogue.kill()

    def growth_mib(self) -> dict[str, float]:
        return {n: round((self.peak[n] - self.start_rss[n]) / MIB, 1) for n in self.procs}


def read_record(path: Path, turn: int, timeout_s: float) -> dict[str, Any] | None:
    """The logger's record of `turn` from its JSONL (the file, not the bus: the driver may be flooded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record["turn"] == turn:
                    return dict(record)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)  # polling a file within a deadline: an appended line has no event to wait on


def log_offsets(folder: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_size for p in (folder / "actors").glob("*.log")}


def new_log_events(folder: Path, since: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {}
    for path in (folder / "actors").glob("*.log"):
        with open(path, "rb") as f:
            f.seek(since.get(path.stem, 0))
            lines = f.read().decode("utf-8", "replace").splitlines()
        events[path.stem] = [json.loads(line) for line in lines if line.startswith("{")]
    return events


def start_rogue(config: Config, kind: str) -> subprocess.Popen[str]:
    code = f"from tests.test_overload import flood; flood({config.bus.pub!r}, {config.bus.sub!r}, " \
           f"{kind!r}, {FLOOD_S})"
    rogue = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert rogue.stdout is not None
    started = threading.Thread(target=rogue.stdout.readline, daemon=True)  # "flooding", once it is on the bus
    started.start()
    started.join(30)
    assert not started.is_alive(), "the rogue never reached the bus"
    return rogue


@pytest.mark.parametrize("kind", ["garbage", "valid", "big"])
def test_the_set_survives_a_flood(flooded: FloodedSet, kind: str) -> None:
    supervisor, folder = flooded.supervisor, flooded.folder
    pids = {name: pid for name in supervisor.children if (pid := supervisor.pid(name)) is not None}
    offsets = log_offsets(folder)
    button_client = BusClient(bus_address(flooded.config), name="flood-driver")
    rogue: subprocess.Popen[str] | None = None
    watch: RssWatch | None = None
    try:
        prove_path(button_client)
        button_client.sub.setsockopt(zmq.UNSUBSCRIBE, b"ctl.ping")  # it only publishes: no flood queues here
        button = ButtonPublisher(button_client, source="script")
        rogue = start_rogue(flooded.config, kind)
        watch = RssWatch(pids, rogue)
        flood_began = time.monotonic()
        watch.start()
        turn = button.press()
        time.sleep(HOLD_S)  # the scenario itself: a person holds the button this long, then lets go
        button.release()
        during = read_record(folder / "turns.jsonl", turn, timeout_s=30)
        out, _ = rogue.communicate(timeout=FLOOD_S + 60)
    finally:
        if watch is not None:
            watch.done.set()
            watch.join(5)
        if rogue is not None and rogue.poll() is None:
            rogue.kill()
            rogue.communicate()
        button_client.close()
    sent = json.loads(out.strip().splitlines()[-1])["sent"] if out.strip() else 0
    print(f"{kind}: rogue sent {sent} messages in {FLOOD_S} s; peak RSS growth MiB {watch.growth_mib()}; "
          f"turn during the flood: {during and (during['status'], during['error'])}")
    assert not watch.tripped, watch.tripped
    assert sent > 0

    # The set is whole and still answers: nothing restarted, the next turn is an ordinary one.
    assert {n: supervisor.restarts(n) for n in supervisor.children} == dict.fromkeys(supervisor.children, 0)
    driver = TurnDriver(bus_address(flooded.config))
    try:
        after = driver.spoken_turn(max_speech_s=30, timeout_s=60)
    finally:
        driver.close()
    assert after["status"] == "ok", after
    if kind != "valid":  # garbage: every receiver counted its drops and logged them, a few lines a second
        events = new_log_events(folder, offsets)
        elapsed = time.monotonic() - flood_began  # the proxy still forwards what it had taken in when the flood ended
        for name in RECEIVERS[kind]:
            one_by_one = [e for e in events[name] if e.get("event") == "bad_frame_dropped"]
            summaries = [e for e in events[name] if e.get("event") == "bad_frames_dropped"]
            assert summaries and summaries[-1]["total"] >= sum(s["count"] for s in summaries) > 0, name
            assert len(one_by_one) <= DROP_LOG_FIRST, (name, len(one_by_one))
            assert len(summaries) <= elapsed + 2, (name, len(summaries), elapsed)

    over = {n: g for n, g in watch.growth_mib().items() if g * MIB >= (PROXY_BOUND if n == "proxy" else ACTOR_BOUND)}
    assert not over, f"{kind} frames broke the memory bound: peak RSS growth {over} MiB"
    assert during is not None and during["status"] == "ok", f"turn during the {kind} flood: {during}"
    proxy_log = new_log_events(folder, offsets)["proxy"]
    proxy_drops = [e for e in proxy_log if e.get("event") == "publisher_over_budget_dropped"]
    assert proxy_drops and sum(e["count"] for e in proxy_drops) > 0, "the proxy dropped none of the flood"
