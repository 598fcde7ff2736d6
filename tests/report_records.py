"""Turn records with known timings for the report tests: made by the real TurnTimeline from messages with
chosen timestamps, and the figures the report must show for them, recomputed here with numpy."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from actors.timing import TurnTimeline
from bus.messages import (
    AudioChunk,
    ButtonEvent,
    CaptureEnd,
    Interrupt,
    LlmDone,
    LlmToken,
    Message,
    PlayerEvent,
    Say,
    Transcript,
)
from launch.report_data import STAGES

T0 = 1_800_000_000.0
STAGE_KEYS = [key for key, _, _ in STAGES]


def timeline_record(start: float, ms: dict[str, float], *, spoken: bool = True, interrupted: bool = False,
                    backends: dict[str, str] | None = None, question: str = "hello") -> dict[str, Any]:
    """A record from TurnTimeline fed the messages of one turn, each stage taking `ms[stage]`."""
    turn = int(start * 1000)
    timeline = TurnTimeline(session="test", turn=turn)
    messages: list[Message] = []
    at = start
    if spoken:
        release = start + ms["hold"] / 1000
        messages += [ButtonEvent(turn=turn, ts=start, pressed=True),
                     ButtonEvent(turn=turn, ts=release, pressed=False),
                     CaptureEnd(turn=turn, ts=release, frames=int(ms["hold"] / 20), duration_ms=ms["hold"])]
        at = release + ms["stt_ms"] / 1000
    messages.append(Transcript(turn=turn, ts=at, text=question, source="speech" if spoken else "typed"))
    for key, template in (("llm_first_token_ms", LlmToken(turn=turn, text="Hi", index=0)),
                          ("persona_ms", Say(turn=turn, text="Hi friend.", index=0)),
                          ("tts_first_chunk_ms", AudioChunk(turn=turn, index=0, sample_rate=22050)),
                          ("player", PlayerEvent(turn=turn, state="started"))):
        at += ms[key] / 1000
        messages.append(dataclasses.replace(template, ts=at))
    messages.append(LlmDone(turn=turn, ts=at, text="Hi friend.", tokens=3))
    if interrupted:
        messages += [Interrupt(turn=turn, ts=at + 0.2), PlayerEvent(turn=turn, ts=at + 0.21, state="stopped")]
    else:
        messages.append(PlayerEvent(turn=turn, ts=at + ms["playback"] / 1000, state="finished"))
    for msg in messages:
        timeline.observe(msg, received_at=msg.ts)
    return timeline.record(backends or {"persona": "rocky", "tts": "piper en_US-joe-medium"})


def random_stages(rng: random.Random, spoken: bool) -> dict[str, float]:
    return {"hold": rng.uniform(1000, 6000), "stt_ms": rng.uniform(10, 500) if spoken else 0.0,
            "llm_first_token_ms": rng.uniform(15, 250), "persona_ms": rng.uniform(2, 120),
            "tts_first_chunk_ms": rng.uniform(1, 300), "player": rng.uniform(0.5, 8), "playback": rng.uniform(50, 3000)}


def bench_records(rng: random.Random) -> list[dict[str, Any]]:
    """Two pipelines x two scenarios x 7 repetitions, plus one failed turn that must not count in a group."""
    records = []
    start = T0
    for pipeline in ("streaming", "sequential"):
        for scenario, spoken in (("typed", False), ("spoken-3s", True)):
            for _ in range(7):
                start += 10
                rec = timeline_record(start, random_stages(rng, spoken), spoken=spoken)
                records.append({**rec, "pipeline": pipeline, "variant": "rocky+piper", "scenario": scenario})
    failed = {**records[0], "turn": int((start + 10) * 1000), "status": "error", "release_to_first_audio_ms": 1e6}
    return [*records, failed]


def write_jsonl(path: Path, records: list[dict[str, Any]], extra_lines: tuple[str, ...] = ()) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(line + "\n" for line in extra_lines))
    return path


def nearest_rank(values: list[float], q: float) -> float:
    # bench.percentile (what BENCHMARK.md shows) takes the element at round(q * (n - 1)): numpy's "nearest".
    return float(np.percentile(values, 100 * q, method="nearest"))


def expected_groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    by: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec["status"] in ("ok", "interrupted"):
            variant = str(rec.get("variant") or rec.get("model"))  # older bench records name only the model
            by.setdefault((rec["pipeline"], variant, rec["scenario"]), []).append(rec)
    out = {}
    for key, recs in by.items():
        values = [r["release_to_first_audio_ms"] for r in recs if r["release_to_first_audio_ms"] is not None]
        stages = {k: nearest_rank(v, 0.5) if (v := [r[k] for r in recs if r[k] is not None]) else None
                  for k in STAGE_KEYS}
        p50 = nearest_rank(values, 0.5)
        out[key] = {"n": len(values), "p50": p50, "p95": nearest_rank(values, 0.95), "stages": stages,
                    "median_turn": median_turn_parts(next(r for r in recs if r["release_to_first_audio_ms"] == p50))}
    return out


def median_turn_parts(rec: dict[str, Any]) -> list[tuple[str, float]]:
    """A record's own stages up to its first audio, from its fields: what the stage chart must stack for it."""
    parts = [(k, rec[k]) for k in STAGE_KEYS if rec[k] is not None and (k != "stt_ms" or rec["release_at"])]
    rest = round(rec["release_to_first_audio_ms"] - sum(v for _, v in parts), 2)
    return parts + ([("player", rest)] if rest > 0 else [])


def bars(fig: Figure) -> dict[str, tuple[float, float]]:
    """(x, width) of every bar the chart tagged, by tag."""
    return {gid: (p.get_x(), p.get_width()) for p in fig.axes[0].patches
            if isinstance(p, Rectangle) and (gid := p.get_gid())}


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 5_000 < len(data) < 5_000_000
    pixels = imread(path)
    assert pixels.shape[0] > 150 and pixels.shape[1] > 500
    assert float(pixels[..., :3].std()) > 0.05, "an image with next to nothing drawn"


def markdown_rows(text: str, columns: int) -> dict[tuple[str, ...], list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return {tuple(r[:columns]): r[columns:] for r in rows}
