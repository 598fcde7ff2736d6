"""`rocky-relay bench --suite doors`: the same spoken question through each front door, in one run.

Doors are named measurements (`DOORS`), each a function that asks the launched set the question once and
returns what it measured, release -> first audio first: `terminal` (the push-to-talk path: mic, button,
player, as `rocky-relay talk`), `wyoming` (what Home Assistant does with a streaming agent and TTS:
transcribe over Wyoming, hand the words to the conversation agent, pipe each `handled-chunk` into the TTS;
release = our `audio-stop`, first audio = the reply's first `audio-chunk`), `wyoming-plain` (a client that
waits for `handled`, then asks for speech) and `browser` (launch/bench_browser.py). The table gives the
medians side by side and what each door adds to the terminal's path.

The Wyoming door is asked through launch/wyoming_client.py, a client on the `wyoming` library's own
`AsyncTcpClient`, as a third party would write it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio.wav import load_pcm16_mono
from launch.bench_table import BENCH_MODELS, model_overrides
from launch.wyoming_client import READ_TIMEOUT_S, converse, converse_into_speech, synthesize, text_of, transcribe

SAMPLES = Path(__file__).resolve().parent / "samples"
QUESTION_WAV = SAMPLES / "prompt-3s.wav"


# --- the bench ----------------------------------------------------------------------------------
@dataclass
class DoorsRun:
    """What every door's measurement gets: the launched set and the question."""

    config: Any
    driver: Any
    """A TurnDriver on the set's bus (the terminal's path)."""
    wyoming_port: int
    question_wav: Path
    marks: dict[str, list[float]] = field(default_factory=dict)
    """Extra figures per name (stage times), printed under the table."""

    def mark(self, name: str, value: float | None) -> None:
        if value is not None:
            self.marks.setdefault(name, []).append(value)


def terminal(run: DoorsRun) -> float | None:
    record = run.driver.spoken_turn(timeout_s=READ_TIMEOUT_S)
    value = record.get("release_to_first_audio_ms")
    if record.get("status") != "ok" or value is None:
        print(f"  terminal turn {record.get('status')}: {record.get('error')} heard {record.get('text_in')!r}")
        return None
    return float(value)


def _wyoming(run: DoorsRun, name: str, streaming: bool) -> float | None:
    pcm = load_pcm16_mono(run.question_wav).tobytes()
    host, port, conversation = "127.0.0.1", run.wyoming_port, f"bench-{uuid.uuid4().hex[:8]}"

    async def ask() -> float | None:
        heard, released = await transcribe(host, port, pcm, realtime=True)
        words = text_of(heard, "transcript")
        run.mark(f"{name} asr: audio-stop -> transcript", 1000 * (time.time() - released))
        if not words:
            return None
        asked = time.time()
        if streaming:
            answer, _speech, first = await converse_into_speech(host, port, words, conversation)
        else:
            answer = await converse(host, port, words, conversation)
            run.mark(f"{name} handle: transcript -> handled", 1000 * (time.time() - asked))
            _speech, first = await synthesize(host, port, text_of(answer, "handled"))
        if first is not None:
            run.mark(f"{name}: transcript -> first audio", 1000 * (first - asked))
        return None if first is None or answer[-1].type != "handled" else 1000 * (first - released)

    return asyncio.run(ask())


def wyoming(run: DoorsRun) -> float | None:
    """Home Assistant with a streaming agent and TTS (2025+): handled-chunks piped into synthesize-chunks."""
    return _wyoming(run, "wyoming", streaming=True)


def wyoming_plain(run: DoorsRun) -> float | None:
    """A client that waits for `handled`, then sends `synthesize` (older Home Assistant, other clients)."""
    return _wyoming(run, "wyoming-plain", streaming=False)


DOORS: dict[str, Callable[[DoorsRun], float | None]] = {"terminal": terminal, "wyoming": wyoming,
                                                        "wyoming-plain": wyoming_plain}
"""Each door: ask once, return release -> first audio in ms (None: the turn failed)."""
BASELINE = "terminal"


def browser(run: DoorsRun) -> float | None:
    """The question said into the page in headless Chromium, through the web gateway (launch/bench_browser.py)."""
    from launch.bench_browser import browser as through_the_page

    return through_the_page(run)


DOORS["browser"] = browser


def warm_up(driver: Any, tries: int = 5) -> None:
    """Every stage answers once before anything is measured. An actor may announce Ready while it still
    warms its model, and the logger ends a turn that waited on it too long, so the first may fail."""
    for _ in range(tries):
        if driver.typed_turn("Hello Rocky.", timeout_s=READ_TIMEOUT_S).get("status") == "ok":
            return
    print(f"  warm-up: no turn came back ok in {tries} tries; measuring anyway", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def table(results: dict[str, list[float]], failed: dict[str, int], marks: dict[str, list[float]]) -> list[str]:
    base = statistics.median(results[BASELINE]) if results.get(BASELINE) else None
    lines = [f"{'door':13s} {'n':>3s} {'failed':>6s} {'release->first audio p50':>26s} {'adds to terminal':>17s}"]
    for name, values in results.items():
        p50 = statistics.median(values) if values else None
        adds = "" if p50 is None or base is None or name == BASELINE else f"{p50 - base:+.0f} ms"
        lines.append(f"{name:13s} {len(values):3d} {failed[name]:6d} "
                     f"{'-' if p50 is None else f'{p50:.0f} ms':>26s} {adds:>17s}")
    lines += [f"  {name}: p50 {statistics.median(v):.0f} ms" for name, v in marks.items() if v]
    return lines


def run(args: argparse.Namespace) -> int:
    from launch.config import bus_address, load_config
    from launch.supervisor import Supervisor
    from launch.turns import TurnDriver

    reps = max(1, int(args.reps))
    model = BENCH_MODELS[0] if args.model == "all" else args.model
    workdir = Path(tempfile.mkdtemp(prefix="rocky-bench-doors-"))
    port = free_port()
    (workdir / "bench.toml").write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n')
    # The edge actors serve only the terminal's session ("local"), so they never capture or play a
    # Wyoming turn; the history is off, so every question is asked afresh whichever door it came by.
    overrides = [*model_overrides(model), "llm.history_tokens=0", "satellite.session=local", "mic.backend=wav",
                 f"mic.path={QUESTION_WAV}", "player.backend=wav", f"player.path={workdir}/reply.wav",
                 f"logger.path={workdir}/turns.jsonl", "wyoming.host=127.0.0.1", f"wyoming.port={port}",
                 "wyoming.zeroconf=false"]
    config = load_config(workdir / "bench.toml", overrides)
    names = [*config.sets["wyoming"], "mic", "player"]
    results: dict[str, list[float]] = {name: [] for name in DOORS}
    failed = dict.fromkeys(DOORS, 0)
    try:
        with Supervisor(config, names, log_dir=workdir / "actors") as supervisor:
            supervisor.start()
            driver = TurnDriver(bus_address(config))
            try:
                doors = DoorsRun(config, driver, port, QUESTION_WAV)
                warm_up(driver)
                for rep in range(reps):
                    for name, measure in DOORS.items():  # interleaved: the machine's mood hits all alike
                        value = measure(doors)
                        print(f"  rep {rep + 1}/{reps} {name:13s} release->first audio "
                              f"{'failed' if value is None else f'{value:.0f} ms'}", flush=True)
                        if value is None:
                            failed[name] += 1
                        else:
                            results[name].append(value)
            finally:
                driver.close()
        print(f"\nbench --suite doors, model {model}, {reps} reps, the question {QUESTION_WAV.name}:")
        print("\n".join(table(results, failed, doors.marks)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if not any(failed.values()) else 1
