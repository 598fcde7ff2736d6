"""`rocky-relay bench --suite tools`: tool-call turns beside the same questions answered without tools.

The launched `typed` set is asked three kinds of question, each `--reps` times: the time, a sum of two
4-digit numbers (new ones each time, from a fixed seed) and "set a timer for N seconds". It runs twice in
the same run: with tools (llm.tools = true: the model calls get_time, calculate, set_timer) and without
(llm.tools = false: it answers from what it knows). Each turn is scored (the time within a minute, the exact
sum, a timer really set for N seconds that then rang) and its release -> first audio and tool time are kept.
Medians and `right x/N` are printed in the style of `rocky-relay bench`; nothing is appended to BENCHMARK.md.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from launch.bench_table import BENCH_MODELS, model_overrides

KINDS = ("time", "sum", "timer")
TURN_TIMEOUT_S = 240.0
TIMER_SECONDS = 2


def question(kind: str, rng: random.Random) -> tuple[str, Any]:
    """The words asked and what a right answer holds."""
    if kind == "time":
        return "What time is it?", None
    if kind == "sum":
        a, b = rng.randint(1000, 9999), rng.randint(1000, 9999)
        return f"What is {a} plus {b}?", a + b
    return f"Set a timer for {TIMER_SECONDS} seconds.", TIMER_SECONDS


def clock_times(text: str) -> set[tuple[int, int]]:
    found = set()
    for hour, minute, half in re.findall(r"\b(\d{1,2}):(\d{2})\s*([AaPp]\.?[Mm]\.?)?", text):
        h = int(hour) % 12 + (12 if half.lower().startswith("p") else 0) if half else int(hour)
        found.add((h, int(minute)))
    return found


def is_right(kind: str, expected: Any, record: dict[str, Any], asked_at: datetime) -> bool:
    text = record.get("text_out", "")
    if kind == "time":
        near = {((asked_at + timedelta(minutes=d)).hour, (asked_at + timedelta(minutes=d)).minute) for d in (-1, 0, 1)}
        return bool(clock_times(text) & near)
    if kind == "sum":
        return str(expected) in text.replace(",", "")
    return any(t["name"] == "set_timer" and t["ok"] and str(t["args"].get("seconds")) in (str(expected),
               f"{expected}.0") for t in record.get("tools", []))


def turn_and_ring(driver: Any, words: str, timeout_s: float) -> tuple[dict[str, Any], bool]:
    """A typed turn's record, and whether a timer rang on its session (its own record) by the time both
    came or `timeout_s` passed: the ring may end before the turn that set it has finished speaking."""
    from bus.messages import Transcript, TurnRecord
    from bus.push_to_talk import new_turn_id

    turn = new_turn_id()
    driver.client.publish(Transcript(session=driver.session, turn=turn, text=words, source="typed"))
    record: dict[str, Any] = {"status": "timeout", "error": f"no record within {timeout_s:g} s"}
    asked = rang = False
    deadline = time.monotonic() + timeout_s
    while not (asked and rang) and time.monotonic() < deadline:
        env = driver.client.recv(timeout_ms=200)
        if env is None or not isinstance(env.msg, TurnRecord) or env.msg.session != driver.session:
            continue
        if env.msg.turn == turn:
            record, asked = env.msg.record, True
            if not any(t["name"] == "set_timer" and t["ok"] for t in record.get("tools", [])):
                break  # no timer was set: none will ring
            deadline = min(deadline, time.monotonic() + TIMER_SECONDS + 30)
        elif env.msg.record.get("source") == "timer":
            rang = True
    return record, rang


def one_mode(model: str, tools: bool, reps: int, workdir: Path) -> list[dict[str, Any]]:
    from launch.config import bus_address, load_config
    from launch.supervisor import Supervisor
    from launch.turns import TurnDriver

    (workdir / "bench.toml").write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n')
    overrides = [*model_overrides(model), "llm.history_tokens=0", f"llm.tools={str(tools).lower()}",
                 "player.backend=wav", f"player.path={workdir}/reply.wav", f"logger.path={workdir}/turns.jsonl",
                 f"tools.timers_path={workdir}/timers.json", "llm.memory_dir=", "logger.stage_timeout_s=120"]
    config = load_config(workdir / "bench.toml", overrides)
    rng = random.Random(14)
    rows: list[dict[str, Any]] = []
    with Supervisor(config, config.sets["typed"], log_dir=workdir / "actors") as supervisor:
        supervisor.start()
        driver = TurnDriver(bus_address(config))
        try:
            driver.typed_turn("Hello Rocky.", timeout_s=TURN_TIMEOUT_S)  # warm every stage first
            for _rep in range(reps):
                for kind in KINDS:
                    words, expected = question(kind, rng)
                    asked_at = datetime.now().astimezone()
                    if kind == "timer":
                        record, rang = turn_and_ring(driver, words, TURN_TIMEOUT_S)
                    else:
                        record, rang = driver.typed_turn(words, timeout_s=TURN_TIMEOUT_S), True
                    right = record.get("status") == "ok" and rang and is_right(kind, expected, record, asked_at)
                    rows.append({"kind": kind, "tools": tools, "right": right, "status": record.get("status"),
                                 "release_to_first_audio_ms": record.get("release_to_first_audio_ms"),
                                 "tool_ms": record.get("tool_ms"),
                                 "calls": [t["name"] for t in record.get("tools", [])]})
                    print(f"  tools {'on ' if tools else 'off'} {kind:5s} {record.get('status')} "
                          f"right={right} release->audio {record.get('release_to_first_audio_ms')} ms "
                          f"calls {rows[-1]['calls']}: {words!r} -> {record.get('text_out', '')!r}", flush=True)
        finally:
            driver.close()
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'question':8s} {'tools':5s} {'n':>3s} {'right':>7s} {'release->first audio p50':>26s} "
             f"{'tool_ms p50':>12s}"]
    for kind in KINDS:
        for tools in (True, False):
            mine = [r for r in rows if r["kind"] == kind and r["tools"] is tools]
            audio = [r["release_to_first_audio_ms"] for r in mine if r["release_to_first_audio_ms"] is not None]
            tool_ms = [r["tool_ms"] for r in mine if r["tool_ms"] is not None]
            p50 = f"{statistics.median(audio):.0f} ms" if audio else "-"
            t50 = f"{statistics.median(tool_ms):.1f} ms" if tool_ms else "-"
            right = f"{sum(r['right'] for r in mine)}/{len(mine)}"
            lines.append(f"{kind:8s} {'on' if tools else 'off':5s} {len(mine):3d} {right:>7s} {p50:>26s} {t50:>12s}")
    return lines


def run(args: argparse.Namespace) -> int:
    from launch.bench_bus import machine_description

    reps = 1 if args.quick else max(1, int(args.reps))
    model = BENCH_MODELS[0] if args.model == "all" else args.model
    print(f"bench --suite tools on {machine_description()}, model {model}, {reps} reps of {', '.join(KINDS)}")
    workdir = Path(tempfile.mkdtemp(prefix="rocky-bench-tools-"))
    try:
        rows = [*one_mode(model, True, reps, workdir), *one_mode(model, False, reps, workdir)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nTool questions, typed, model {model} (tools on: the model calls them; off: it answers alone):",
          *table(rows), sep="\n")
    failed = sum(1 for r in rows if r["status"] != "ok")
    return 0 if failed == 0 else 1
