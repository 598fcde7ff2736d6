"""`rocky-relay report`: charts and report.md built from turn records, checked against the records.

Records are made by the real TurnTimeline (actors/timing.py) from messages with known timestamps, so every
figure is known before the report reads it; p50/p95 are recomputed here with numpy. When the checkout has
real logs (logs/ is not in git), a few of their lines are checked the same way.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from actors.timing import TurnTimeline
from bus.messages import (
    ButtonEvent,
    TurnError,
)
from launch.report import group_key, register, report, turn_waterfall
from launch.report_data import ReportSummary
from tests.report_records import (
    STAGE_KEYS,
    T0,
    bars,
    bench_records,
    check_png,
    expected_groups,
    markdown_rows,
    random_stages,
    timeline_record,
    write_jsonl,
)

LOGS = Path(__file__).resolve().parents[1] / "logs"


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rr-report-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_waterfall(rec: dict[str, Any], row: int, fig: Figure) -> None:
    turn = turn_waterfall(rec)
    segments = {s.stage: s for s in turn.segments}
    spoken = rec["release_at"] is not None
    for key in STAGE_KEYS if spoken else STAGE_KEYS[1:]:
        assert segments[key].length_ms == rec[key]
    assert "stt_ms" in segments if spoken else "stt_ms" not in segments
    assert turn.marks["first audio"] == rec["release_to_first_audio_ms"] == turn.headline_ms
    assert turn.marks["first chunk"] == pytest.approx(sum(rec[k] for k in STAGE_KEYS if rec[k] is not None), abs=0.02)
    if "player" in segments:  # absent only when the chunk and the first audio fall in the same 10 µs
        assert segments["player"].start_ms + segments["player"].length_ms == pytest.approx(turn.marks["first audio"])
    if rec["playback_finished_at"] is not None:
        assert segments["playback"].length_ms == pytest.approx(rec["playback_ms"], abs=0.02)
    if spoken:
        assert segments["hold"].start_ms == pytest.approx(-1000 * (rec["release_at"] - rec["press_at"]), abs=0.01)
    drawn = bars(fig)
    for seg in turn.segments:
        assert drawn[f"{row}:{seg.stage}"] == pytest.approx((seg.start_ms, seg.length_ms))


def test_report_numbers_charts_and_table_match_the_records(workdir: Path) -> None:
    rng = random.Random(64)
    bench = bench_records(rng)
    turns = [timeline_record(T0 + 1000 + 7 * i, random_stages(rng, i % 2 == 0), spoken=i % 2 == 0,
                             question=f"Question number {i}: how far is Erid from the Sun, in light years?")
             for i in range(5)]
    paths = [write_jsonl(workdir / "bench.jsonl", bench), write_jsonl(workdir / "turns.jsonl", turns)]
    summary = report(paths, workdir / "out", last=4)

    assert (summary.records, summary.bench_records, summary.malformed) == (len(bench) + 5, len(bench), [])
    assert summary.statuses == {"ok": len(bench) + 4, "error": 1}
    assert sorted(summary.files) == ["latency", "markdown", "stages", "waterfall"]
    for name in ("waterfall", "latency", "stages"):
        check_png(summary.files[name])

    expected = expected_groups(bench)
    got = {(g.pipeline, g.variant, g.scenario): g for g in summary.groups if g.pipeline != "turns"}
    assert sorted(got) == sorted(expected)
    latency, stages = bars(summary.figures["latency"]), bars(summary.figures["stages"])
    table = markdown_rows(summary.files["markdown"].read_text(), 1)
    for key, want in expected.items():
        g = got[key]
        assert (g.n, g.p50, g.p95, g.stage_p50) == (want["n"], want["p50"], want["p95"], want["stages"])
        assert latency[f"p50:{g.label}"] == (0.0, want["p50"]) and latency[f"p95:{g.label}"] == (0.0, want["p95"])
        # The stage chart stacks the median turn's own stages: end to end, they are the p50 it claims.
        parts = want["median_turn"]
        for i, (k, v) in enumerate(parts):
            assert stages[f"{k}:{g.label}"] == pytest.approx((sum(w for _, w in parts[:i]), v), abs=0.02)
        assert len([gid for gid in stages if gid.endswith(f":{g.label}")]) == len(parts)
        assert sum(v for _, v in parts) == pytest.approx(want["p50"], abs=0.02)
        drawn_end = max(x + w for gid, (x, w) in stages.items() if gid.endswith(f":{g.label}"))
        assert drawn_end == pytest.approx(want["p50"], abs=0.02)
        by_stage = dict(parts)
        cells = [str(want["n"]), f"{want['p50']:.0f}", f"{want['p95']:.0f}"]
        cells += ["-" if (v := by_stage.get(k)) is None else f"{v:.0f}" for k in [*STAGE_KEYS, "player"]]
        assert table[(g.label,)] == cells

    # The waterfall shows the turn log's last 4 turns (not the benchmarks'), oldest first.
    assert [t.label for t in summary.waterfall] == [turn_waterfall(r).label for r in turns[-4:]]
    assert [t.label.split(" (")[0] for t in summary.waterfall] == [
        f"Question number {i}: how far is Erid from…" for i in range(1, 5)], "rows are named by the question"
    when = datetime.fromtimestamp(T0 + 1007, UTC).strftime("%H:%M:%S")
    assert summary.waterfall[0].label.endswith(f"(typed, {when})"), "then how it came and when"
    waterfall_rows = markdown_rows(summary.files["markdown"].read_text(), 1)
    for turn in summary.waterfall:  # the turn table holds each stage's length, which add up to the headline
        cells = waterfall_rows[(turn.label,)]
        stage_cells = [float(c) for c in cells[:5] if c != "-"]
        assert cells[5] == f"{turn.headline_ms:.0f}"
        assert sum(stage_cells) == pytest.approx(turn.headline_ms, abs=3)  # each cell rounded to 1 ms
    for row, rec in enumerate(turns[-4:]):
        check_waterfall(rec, row, summary.figures["waterfall"])
    # Plain turns are grouped like bench variants, by persona+tts and source.
    assert {group_key(r) for r in turns} == {("turns", "rocky+piper", "speech"), ("turns", "rocky+piper", "typed")}


def test_report_from_real_logs(workdir: Path) -> None:
    sources = sorted((LOGS / "benchmarks").glob("*.jsonl")) + [p for p in [LOGS / "turns.jsonl"] if p.exists()]
    if not sources:
        pytest.skip("no logs/ in this checkout (run rocky-relay bench or a turn to make some)")
    copies = []
    for i, source in enumerate(sources):  # a few lines of each, copied: the logs themselves stay untouched
        lines = source.read_text().splitlines()[:12]
        copies.append(workdir / f"{i}-{source.name}")
        copies[-1].write_text("\n".join(lines) + "\n")
    records = [json.loads(line) for p in copies for line in p.read_text().splitlines()]
    summary = report(copies, workdir / "out", last=6)
    assert summary.records == len(records) and summary.malformed == []
    for name in summary.figures:
        check_png(summary.files[name])
    bench = [r for r in records if "scenario" in r]
    got = {(g.pipeline, g.variant, g.scenario): (g.n, g.p50, g.p95) for g in summary.groups if g.pipeline != "turns"}
    assert got == {k: (v["n"], v["p50"], v["p95"]) for k, v in expected_groups(bench).items()}
    plain = sorted((r for r in records if "scenario" not in r), key=lambda r: r["turn"])[-6:] or \
        sorted(records, key=lambda r: r["turn"])[-6:]
    for row, rec in enumerate(plain):
        if rec["status"] == "ok":
            check_waterfall(rec, row, summary.figures["waterfall"])


def test_turns_with_missing_marks_are_drawn_without_them(workdir: Path) -> None:
    failed = TurnTimeline(session="test", turn=int(T0 * 1000))
    for msg in (ButtonEvent(turn=failed.turn, ts=T0, pressed=True),
                ButtonEvent(turn=failed.turn, ts=T0 + 2, pressed=False),
                TurnError(turn=failed.turn, ts=T0 + 2.3, stage="stt", reason="no speech heard")):
        failed.observe(msg, received_at=msg.ts)
    stages = {"stt_ms": 0.0, "llm_first_token_ms": 40.0, "persona_ms": 30.0, "tts_first_chunk_ms": 90.0, "player": 3.0}
    interrupted = timeline_record(T0 + 10, stages, spoken=False, interrupted=True)
    odd = {"turn": int(T0 * 1000) + 20_000, "status": "ok", "release_at": T0 + 20, "stt_ms": "fast", "backends": None}
    records = [failed.record({}), interrupted, odd]
    summary = report([write_jsonl(workdir / "turns.jsonl", records)], workdir / "out")

    error_row, cut_row, odd_row = summary.waterfall
    assert error_row.label.endswith("[error]")
    assert [s.stage for s in error_row.segments] == ["hold"] and set(error_row.marks) == {"press", "release"}
    assert error_row.segments[0].length_ms == 2000.0
    assert [s.stage for s in cut_row.segments] == [*STAGE_KEYS[1:], "player"]  # no playback: it was stopped
    assert "end" not in cut_row.marks and cut_row.marks["first audio"] == interrupted["release_to_first_audio_ms"]
    assert odd_row.segments == () and odd_row.marks == {"release": 0.0}
    assert summary.statuses == {"error": 1, "interrupted": 1, "ok": 1}
    # The error turn is in no group; the odd one is, with no release-to-audio figure to count.
    assert [(g.variant, g.scenario, g.n, g.p50) for g in summary.groups] == [
        ("rocky+piper", "typed", 1, interrupted["release_to_first_audio_ms"]), ("unknown", "?", 0, None)]
    check_png(summary.files["waterfall"])


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rocky-relay")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    return int(args.func(args))


def test_malformed_lines_are_counted_and_reported(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = [timeline_record(T0 + 10 * i, random_stages(random.Random(i), True)) for i in range(3)]
    path = write_jsonl(workdir / "turns.jsonl", good[:2], ("not json", "[1, 2]", '{"no": "turn field"}', "",
                                                           json.dumps(good[2])[:-20]))
    write_jsonl(workdir / "more.jsonl", good[2:])
    assert run_cli([str(path), str(workdir / "more.jsonl"), "--out", str(workdir / "out")]) == 0
    err = capsys.readouterr().err
    assert "skipped 4 malformed lines" in err and f"{path}:3" in err and f"{path}:7" in err
    text = (workdir / "out" / "report.md").read_text()
    assert "3 turn records" in text and "Skipped 4 malformed lines" in text and f"`{path}:3`" in text
    for name in ("waterfall.png", "latency.png", "stages.png"):
        check_png(workdir / "out" / name)


def test_no_records_is_a_clear_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "empty.jsonl").write_text("")
    (workdir / "junk.jsonl").write_text("garbage\n")
    out = workdir / "out"
    assert run_cli([str(workdir / "empty.jsonl"), str(workdir / "junk.jsonl"), str(workdir / "absent.jsonl"),
                    "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no turn records in" in err and "cannot read" in err and "absent.jsonl" in err
    assert not out.exists()
    summary = report([workdir / "empty.jsonl"], out)
    assert summary == ReportSummary() and not out.exists()


def test_default_inputs_are_the_turn_log_and_benchmarks(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(7)
    (workdir / "logs" / "benchmarks").mkdir(parents=True)
    write_jsonl(workdir / "logs" / "turns.jsonl", [timeline_record(T0 + 5000, random_stages(rng, True))])
    bench = bench_records(rng)
    write_jsonl(workdir / "logs" / "benchmarks" / "run.jsonl", bench)
    monkeypatch.chdir(workdir)
    assert run_cli(["--last", "3"]) == 0
    assert f"{len(bench) + 1} turn records" in capsys.readouterr().out
    text = (workdir / "logs" / "report" / "report.md").read_text()
    assert "![waterfall](waterfall.png)" in text
    assert "| Streaming: Typed question, Rocky persona, Piper voice | 7 |" in text

