"""`rocky-relay bench`: what a user waits for and whether the answer was right, through the real actors.

For each model (the default Qwen2.5-Coder-1.5B-Instruct and the tiny gemma-3-270m, with whisper base;
and gemma with tiny.en, the fastest set; `bench_table.BENCH_MODELS`) it launches the actor processes and
asks the bundled answer set (`launch/questions.toml`): typed, and spoken by two voices (Piper and espeak-ng,
`launch/bench_prompts.py`) released 0.2 s after the last word, which is what people do; then shorter runs
released at once (0 s) and generously (0.5 s), the same spoken turns with one `nice -n 19` busy loop
running beside them, and a barge-in. The sequential flow (whole transcription after release, whole reply,
whole speech) runs the same models in the same run. Replies are scored against the accepted answers
(`right x/N`). Raw records go to logs/benchmarks/*.jsonl; the tables are printed and appended to
BENCHMARK.md with the machine they ran on; `rocky-relay report` draws them (the model is the record's
`variant`). Memory is off, so each question is asked afresh (the KV cache still holds the fixed head).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from launch.answers import Question, load_questions
from launch.bench_bus import bus_hop_us, in_process_first_audio_ms, machine_description
from launch.bench_prompts import write_prompts
from launch.bench_table import latency_table, model_overrides, model_parts, ratios, scores
from launch.config import Config, bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

RELEASES = (0.0, 0.2, 0.5)
HEADLINE_RELEASE = 0.2
SEQUENTIAL = ["stt.streaming=false", "llm.streaming=false", "persona.streaming=false", "tts.streaming=false",
              "player.streaming=false"]
BUSY_LOOP = "while True: pass"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    """typed, spoken or barge-in."""
    voice: str = "piper"
    release_s: float = HEADLINE_RELEASE
    busy: str = ""
    """A `nice -n 19` busy loop beside the turns: "other-session" (as a desktop's background work runs, in
    its own session: the kernel's autogroups give it a fair share whatever its nice value) or
    "same-session" (started from the launcher's own terminal, where nice 19 does yield)."""
    whole_set: bool = False
    """Ask every question (and score the replies); otherwise the first `reps`."""


def scenarios(pipeline: str) -> list[Scenario]:
    if pipeline == "sequential":
        return [Scenario("spoken-piper+0.2", "spoken")]
    runs = [Scenario("typed", "typed", whole_set=True),
            Scenario("spoken-piper+0.2", "spoken", whole_set=True),
            Scenario("spoken-espeak+0.2", "spoken", voice="espeak", whole_set=True)]
    for release in (r for r in RELEASES if r != HEADLINE_RELEASE):
        runs += [Scenario(f"spoken-{voice}+{release:.1f}", "spoken", voice=voice, release_s=release)
                 for voice in ("piper", "espeak")]
    runs += [Scenario(f"busy-{voice}+0.2", "spoken", voice=voice, busy="other-session")
             for voice in ("piper", "espeak")]
    runs.append(Scenario("busy-same-session-piper+0.2", "spoken", busy="same-session"))
    return [*runs, Scenario("barge-in", "barge-in")]


@contextlib.contextmanager
def busy_loop(where: str) -> Iterator[None]:
    """One CPU-bound loop at nice 19 (see `Scenario.busy`), killed when the block ends."""
    if not where:
        yield
        return
    proc = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", BUSY_LOOP],
                            start_new_session=where == "other-session")
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def run_turn(driver: TurnDriver, config: Config, scenario: Scenario, question: Question,
             prompt: Path | None) -> dict[str, Any]:
    if scenario.kind == "typed":
        return driver.typed_turn(question.ask, timeout_s=120)
    if scenario.kind == "barge-in":
        record = driver.interrupted_turn("Tell me a long story about your ship and your friends.")
        with wave.open(config.section("player").path) as reply:  # audio after the stop would be stale
            played_ms = 1000 * reply.getnframes() / reply.getframerate()
        record["stale_audio_ms"] = round(max(0.0, played_ms - (record.get("played_at_stop_ms") or 0.0)), 1)
        return record
    assert prompt is not None
    Path(config.section("mic").path).write_bytes(prompt.read_bytes())
    return driver.spoken_turn(timeout_s=120)


def run_model(model: str, pipeline: str, questions: list[Question], prompts: dict[tuple[str, float], list[Path]],
              reps: int, workdir: Path) -> list[dict[str, Any]]:
    overrides = [*model_overrides(model), "persona.style=rocky", "tts.backend=piper",
                 *(SEQUENTIAL if pipeline == "sequential" else []),
                 "mic.backend=wav", f"mic.path={workdir}/mic.wav", "player.backend=wav",
                 f"player.path={workdir}/reply.wav", f"logger.path={workdir}/turns.jsonl", "llm.history_tokens=0"]
    (workdir / "bench.toml").write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n')
    config = load_config(workdir / "bench.toml", overrides)
    records: list[dict[str, Any]] = []
    launched = time.monotonic()
    with Supervisor(config, config.sets["local"], log_dir=workdir / "actors") as supervisor:
        supervisor.start()
        startup_s = time.monotonic() - launched
        driver = TurnDriver(bus_address(config))
        try:
            cold = driver.typed_turn(questions[0].ask, timeout_s=180)
            cold.update(model=model, variant=model, pipeline=pipeline, scenario="typed-cold",
                        startup_s=round(startup_s, 2))
            records.append(cold)
            for scenario in scenarios(pipeline):
                count = len(questions) if scenario.whole_set else min(reps, len(questions))
                if scenario.kind == "barge-in":
                    count = min(reps, 3)
                with busy_loop(scenario.busy):
                    for i in range(count):
                        prompt = (prompts[(scenario.voice, scenario.release_s)][i]
                                  if scenario.kind == "spoken" else None)
                        record = run_turn(driver, config, scenario, questions[i], prompt)
                        right = (questions[i].is_right(record.get("spoken_text") or "")
                                 if scenario.whole_set else None)
                        record.update(model=model, variant=model, pipeline=pipeline, scenario=scenario.name,
                                      question=i, right=right, priority=supervisor.priority_note)
                        records.append(record)
                        print(f"  {model:13s} {pipeline:10s} {scenario.name:18s} {record['status']:5s} "
                              f"release->audio {record['release_to_first_audio_ms']} ms"
                              f"{'' if right is None else ' right' if right else ' WRONG'}: "
                              f"{record.get('text_in', '')!r} -> {record.get('spoken_text', '')!r}", flush=True)
        finally:
            driver.close()
    return records


def main(reps: int, models: list[str], pipelines: list[str], quick: bool, append: bool) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path("logs/benchmarks")
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(f"/tmp/rocky-bench-{stamp}")
    workdir.mkdir(parents=True)
    questions = load_questions()[: 6 if quick else None]
    prompts = write_prompts([q.ask for q in questions], workdir / "prompts", RELEASES)
    records: list[dict[str, Any]] = []
    for model in models:
        for pipeline in pipelines:
            records += run_model(model, pipeline, questions, prompts, reps, workdir)
        if "sequential" in pipelines:  # the same models in a row in one process, once the actors are gone
            llm, stt = model_parts(model)
            records += [{"model": model, "variant": model, "pipeline": "in-process", "scenario": "spoken-piper+0.2",
                         "status": "ok", "release_to_first_audio_ms": round(ms, 1)}
                        for ms in in_process_first_audio_ms(llm, prompts[("piper", 0.2)][:reps], stt_model=stt)]
    raw = out_dir / f"{stamp}.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in records))
    hop = bus_hop_us()
    failed = sum(1 for r in records if r["status"] not in ("ok", "interrupted"))
    claims = sorted({r["priority"] for r in records if r.get("priority")})  # in-process rows launch nothing
    report = [f"### {stamp} — {machine_description()}", "",
              f"`rocky-relay bench --reps {reps}{' --quick' if quick else ''}` (models {', '.join(models)}; "
              f"{', '.join(pipelines)}); {len(records)} turns, {failed} failed; raw records: `{raw}`.", "",
              f"CPU priority (server.priority): {'; '.join(claims)}.",
              "",
              "Answer score (spoken text checked against `launch/questions.toml`):", "", "```", *scores(records),
              "```", "", *latency_table(records), "",
              "Ratios, same run (release 0.2 s after the last word, Piper voice):", "", "```",
              *ratios(records, "spoken-piper+0.2", "busy-piper+0.2", "spoken-piper+0.2"), "```", "",
              f"Bus one-way hop on loopback (tcp, via the proxy, {hop['n']} messages): "
              f"p50 {hop['p50']:.0f} µs, p99 {hop['p99']:.0f} µs.", ""]
    print("\n".join(report))
    if append:
        bench_md = Path("BENCHMARK.md")
        if not bench_md.exists():
            bench_md.write_text("# Benchmarks\n\nAppended by `rocky-relay bench`; figures are milliseconds.\n\n")
        with bench_md.open("a") as f:  # the newest run goes last; "Where it stands" at the top is edited by hand
            f.write("\n".join(report) + "\n")
    return 0 if failed == 0 else 1
