"""`rocky-relay bench`: what a user waits for, through the real launched actor processes.

For each pipeline (streaming, and the sequential flow with the same models and
processes) and each actor-set variant (persona on/off, each TTS backend), it
launches fresh processes (the first turn is the *cold* one), then runs every
scenario N warm times. Raw records go to logs/benchmarks/*.jsonl; the p50/p95
table and the streaming/sequential ratios are printed and appended to
BENCHMARK.md with the machine they ran on. Conversation memory is off so every
repetition answers the same prompt (the KV cache still holds the fixed head).
"""

from __future__ import annotations

import json
import statistics
import time
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from launch.bench_bus import bus_hop_us, in_process_first_audio_ms, machine_description
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

SAMPLES = Path(__file__).resolve().parent / "samples"
TYPED_PROMPT = "What is the biggest planet in our solar system?"
FIGURES = ("release_to_first_audio_ms", "press_to_first_audio_ms", "stt_ms", "llm_first_token_ms",
           "persona_ms", "tts_first_chunk_ms", "llm_total_ms", "tts_total_ms", "interrupt_to_silence_ms",
           "stale_audio_ms")
SEQUENTIAL = ["stt.streaming=false", "llm.streaming=false", "persona.streaming=false", "tts.streaming=false",
              "player.streaming=false"]


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]
    scenarios: tuple[str, ...]


VARIANTS = (
    Variant("rocky+piper", ("persona.style=rocky", "tts.backend=piper"),
            ("typed", "spoken-1s", "spoken-3s", "spoken-6s", "barge-in")),
    Variant("plain+piper", ("persona.style=none", "tts.backend=piper"), ("spoken-3s",)),
    Variant("rocky+tone", ("persona.style=rocky", "tts.backend=tone"), ("spoken-3s",)),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_turn(driver: TurnDriver, config: dict[str, Any], scenario: str) -> dict[str, Any]:
    if scenario == "typed":
        return driver.typed_turn(TYPED_PROMPT, timeout_s=120)
    if scenario == "barge-in":
        record = driver.interrupted_turn("Tell me a long story about your ship and your friends.")
        # Audio that reached the output after the stop would be a stale chunk played.
        with wave.open(config["player"]["path"]) as reply:
            played_ms = 1000 * reply.getnframes() / reply.getframerate()
        record["stale_audio_ms"] = round(max(0.0, played_ms - (record.get("played_at_stop_ms") or 0.0)), 1)
        return record
    Path(config["mic"]["path"]).write_bytes((SAMPLES / f"prompt-{scenario.split('-')[1]}.wav").read_bytes())
    return driver.spoken_turn(timeout_s=120)


def run_variant(pipeline: str, variant: Variant, reps: int, workdir: Path) -> list[dict[str, Any]]:
    overrides = [*variant.overrides, *(SEQUENTIAL if pipeline == "sequential" else []),
                 "mic.backend=wav", f"mic.path={workdir}/mic.wav", "player.backend=wav",
                 f"player.path={workdir}/reply.wav", f"logger.path={workdir}/turns.jsonl", "llm.history_tokens=0"]
    (workdir / "bench.toml").write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n')
    config = load_config(workdir / "bench.toml", overrides)
    records: list[dict[str, Any]] = []
    launched = time.monotonic()
    with Supervisor(config, config["sets"]["local"], log_dir=workdir / "actors") as supervisor:
        supervisor.start()
        startup_s = time.monotonic() - launched
        driver = TurnDriver(bus_address(config))
        try:
            # Barge-in only means something when audio plays as it comes; sequential writes it at once.
            for scenario in [s for s in variant.scenarios if pipeline == "streaming" or s != "barge-in"]:
                for rep in range(reps + (1 if scenario == variant.scenarios[0] else 0)):
                    cold = scenario == variant.scenarios[0] and rep == 0
                    record = run_turn(driver, config, scenario)
                    record.update(pipeline=pipeline, variant=variant.name, startup_s=round(startup_s, 2),
                                  scenario=f"{scenario}-cold" if cold else scenario)
                    records.append(record)
                    print(f"  {pipeline:10s} {variant.name:12s} {record['scenario']:15s} "
                          f"{record['status']:5s} release->audio {record['release_to_first_audio_ms']} ms",
                          flush=True)
        finally:
            driver.close()
    return records


def table(records: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec["status"] in ("ok", "interrupted"):
            groups.setdefault((rec["pipeline"], rec["variant"], rec["scenario"]), []).append(rec)
    head = "| pipeline | variant | scenario | n | " + " | ".join(f"{f} p50/p95" for f in FIGURES) + " |"
    lines = [head, "|" + "---|" * (4 + len(FIGURES))]
    for (pipeline, variant, scenario), recs in sorted(groups.items()):
        cells = []
        for figure in FIGURES:
            values = [r[figure] for r in recs if r.get(figure) is not None]
            cells.append(f"{percentile(values, .5):.0f} / {percentile(values, .95):.0f}" if values else "-")
        lines.append(f"| {pipeline} | {variant} | {scenario} | {len(recs)} | " + " | ".join(cells) + " |")
    return lines


def ratios(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| variant | scenario | streaming p50 | sequential p50 | streaming / sequential |",
             "|---|---|---|---|---|"]
    by: dict[tuple[str, str, str], list[float]] = {}
    for rec in records:
        if rec["status"] == "ok" and rec["release_to_first_audio_ms"] is not None:
            by.setdefault((rec["variant"], rec["scenario"], rec["pipeline"]), []).append(
                rec["release_to_first_audio_ms"])
    for (variant, scenario, pipeline), values in sorted(by.items()):
        other = by.get((variant, scenario, "sequential"))
        if pipeline == "streaming" and other:
            s, q = statistics.median(values), statistics.median(other)
            lines.append(f"| {variant} | {scenario} | {s:.0f} ms | {q:.0f} ms | {s / q:.2f} |")
    return lines


def main(reps: int, pipelines: list[str], quick: bool, append: bool) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path("logs/benchmarks")
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(f"/tmp/rocky-bench-{stamp}")
    workdir.mkdir(parents=True)
    variants = VARIANTS[:1] if quick else VARIANTS
    records: list[dict[str, Any]] = []
    for pipeline in pipelines:
        for variant in variants:
            records += run_variant(pipeline, variant, reps, workdir)
    raw = out_dir / f"{stamp}.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in records))
    hop = bus_hop_us()
    overhead = in_process_first_audio_ms(TYPED_PROMPT, reps, [r for r in records if r["scenario"] == "typed"
                                                              and r["pipeline"] == "streaming"])
    failed = sum(1 for r in records if r["status"] not in ("ok", "interrupted"))
    report = [f"## {stamp} — {machine_description()}", "",
              f"`rocky-relay bench --reps {reps}` ({', '.join(pipelines)}); {len(records)} turns, {failed} failed; "
              f"raw records: `{raw}`.", "", *table(records), "",
              "Release to first audio, streaming / sequential (same run, p50):", "", *ratios(records), "",
              f"Bus one-way hop on loopback (tcp, via the proxy, {hop['n']} messages): "
              f"p50 {hop['p50']:.0f} µs, p99 {hop['p99']:.0f} µs.", "",
              f"Typed turn, text to first audio: actor system p50 {overhead['actors_p50']:.0f} ms vs the same "
              f"work in one process p50 {overhead['inproc_p50']:.0f} ms: "
              f"{100 * (overhead['actors_p50'] / overhead['inproc_p50'] - 1):+.1f} %.", ""]
    print("\n".join(report))
    if append:
        bench_md = Path("BENCHMARK.md")
        if not bench_md.exists():
            bench_md.write_text("# Benchmarks\n\nAppended by `rocky-relay bench`; figures are milliseconds.\n\n")
        with bench_md.open("a") as f:
            f.write("\n".join(report) + "\n")
    return 0 if failed == 0 else 1
