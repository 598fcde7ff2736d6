"""`rocky-relay report`: turn records drawn as pictures a person would rather read.

It reads turn records (logs/turns.jsonl) and benchmark records (logs/benchmarks/*.jsonl: the same record
plus pipeline/variant/scenario labels) and writes into one folder:

- waterfall.png: the last N turns, every stage on one time axis from the release (typed turns: the transcript);
- latency.png: release to first audio, p50 and p95 per pipeline, variant and scenario;
- stages.png: per group, the stages of its median turn (the one whose release to first audio is the p50),
  stacked: they sum to that p50 (medians of each stage would not: the median of a sum is not a sum of medians);
- report.md: the pictures and tables of the same numbers.

Every number is computed here without matplotlib; launch/report_charts.py only draws them and writes them
into report.md, so tests check the numbers, then that each bar and table cell shows them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from launch.report_data import (
    FILES,
    HEADLINE,
    PLAYER_STAGE,
    STAGES,
    GroupStats,
    ReportError,
    ReportSummary,
    Segment,
    TurnWaterfall,
)
from launch.report_labels import question_words

BENCH_LABELS = ("pipeline", "variant", "scenario")
GROUPED = ("ok", "interrupted")  # as bench.table: a failed turn's timings say nothing about speed
DEFAULT_TURNS = Path("logs/turns.jsonl")
DEFAULT_BENCH = Path("logs/benchmarks")
DEFAULT_OUT = Path("logs/report")


def number(rec: dict[str, Any], key: str) -> float | None:
    """A finite number from the record, None for anything else: old or hand-edited logs must not crash us."""
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def is_bench(rec: dict[str, Any]) -> bool:
    # Bench records before the model became their variant carry `model` only.
    labels = {**rec, "variant": rec.get("variant") or rec.get("model")}
    return all(isinstance(labels.get(label), str) for label in BENCH_LABELS)


def load_records(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(records, malformed 'path:line', unreadable paths); a folder stands for its *.jsonl files."""
    records: list[dict[str, Any]] = []
    malformed: list[str] = []
    unreadable: list[str] = []
    files = [f for p in paths for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            unreadable.append(f"{path} ({exc.strerror or exc})")
            continue
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if isinstance(rec, dict) and "turn" in rec:
                records.append(rec)
            else:
                malformed.append(f"{path}:{lineno}")
    return records, malformed, unreadable


def _ms(later: float, earlier: float) -> float:
    return round(1000.0 * (later - earlier), 2)  # timing.py's rounding, so marks compare with its figures


def turn_waterfall(rec: dict[str, Any]) -> TurnWaterfall:
    """The stages of one record on one axis; a stage with no figure ends the chain (later marks unknown)."""
    press, release = number(rec, "press_at"), number(rec, "release_at")
    first_audio, finished = number(rec, "first_audio_at"), number(rec, "playback_finished_at")
    headline = number(rec, HEADLINE)
    segments: list[Segment] = []
    marks: dict[str, float] = {}
    if release is not None:
        marks["release"] = 0.0
        if press is not None:
            marks["press"] = _ms(press, release)
            segments.append(Segment("hold", marks["press"], -marks["press"]))
    at: float | None = 0.0
    for key, _, mark in STAGES:
        if key == "stt_ms" and release is None:
            continue  # a typed turn's words arrive as the transcript: that is its origin
        length = number(rec, key)
        if at is None or length is None:
            at = None
            continue
        segments.append(Segment(key, at, length))
        at = round(at + length, 2)
        marks[mark] = at
    if headline is not None:
        marks["first audio"] = headline
        if at is not None and headline > at:
            segments.append(Segment(PLAYER_STAGE[0], at, round(headline - at, 2)))
        if first_audio is not None and finished is not None:
            playback = _ms(finished, first_audio)
            segments.append(Segment("playback", headline, playback))
            marks["end"] = round(headline + playback, 2)
    return TurnWaterfall(label=_turn_label(rec), origin="release" if release is not None else "transcript",
                         segments=tuple(segments), marks=marks, headline_ms=headline)


def _turn_label(rec: dict[str, Any]) -> str:
    turn = number(rec, "turn")  # the id is the turn's start in ms since the epoch
    try:
        when = datetime.fromtimestamp(turn / 1000, UTC).strftime("%H:%M:%S") if turn else "?"
    except (OverflowError, OSError, ValueError):  # a hand-edited id far outside the calendar
        when = "?"
    how = {"typed": "typed", "speech": "spoken", "timer": "timer"}.get(str(rec.get("source")), "?")
    status = rec.get("status")
    return f"{question_words(rec.get('text_in'))} ({how}, {when})" + (f" [{status}]" if status != "ok" else "")


def last_turns(records: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The last `count` turns of the turn log, or of the benchmarks when only those were given."""
    plain = [r for r in records if not is_bench(r)] or records
    return sorted(plain, key=lambda r: number(r, "turn") or 0.0)[-count:] if count > 0 else []


def group_key(rec: dict[str, Any]) -> tuple[str, str, str]:
    if is_bench(rec):
        return rec["pipeline"], str(rec.get("variant") or rec.get("model") or "?"), rec["scenario"]
    # Plain turns are named as bench names its variants (persona+tts), so both read alike.
    backends = rec.get("backends")
    persona, tts = (backends.get("persona"), backends.get("tts")) if isinstance(backends, dict) else (None, None)
    named = isinstance(persona, str) and isinstance(tts, str) and tts.strip()
    variant = f"{persona}+{str(tts).split()[0]}" if named else "unknown"
    return "turns", variant, str(rec.get("source") or "?")


def _values(recs: list[dict[str, Any]], key: str) -> list[float]:
    return [v for r in recs if (v := number(r, key)) is not None]


def group_stats(records: list[dict[str, Any]]) -> list[GroupStats]:
    # bench.percentile is what BENCHMARK.md's table uses: the report must show the same numbers.
    from launch.bench_table import percentile

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("status") in GROUPED:
            groups.setdefault(group_key(rec), []).append(rec)
    stats = []
    for key, recs in sorted(groups.items()):
        values = _values(recs, HEADLINE)
        stages = {k: (percentile(v, 0.5) if (v := _values(recs, k)) else None) for k, _, _ in STAGES}
        p50 = percentile(values, 0.5) if values else None
        stats.append(GroupStats(*key, n=len(values), p50=p50, p95=percentile(values, 0.95) if values else None,
                                stage_p50=stages, median_turn=_median_turn(recs, p50)))
    return stats


def _median_turn(recs: list[dict[str, Any]], p50: float | None) -> tuple[Segment, ...]:
    """The stages of the turn whose release to first audio is `p50`, up to its first audio, and only when they
    add up to it (a turn with a stage unrecorded is passed over for another with the same figure)."""
    for rec in recs:
        if p50 is None or number(rec, HEADLINE) != p50:
            continue
        segments = tuple(s for s in turn_waterfall(rec).segments if s.stage not in ("hold", "playback"))
        if segments and math.isclose(sum(s.length_ms for s in segments), p50, abs_tol=0.05):
            return segments
    return ()


def report(paths: Sequence[Path], out_dir: Path, last: int = 12) -> ReportSummary:
    """Read the records, write the charts and report.md into out_dir; nothing is written without records."""
    records, malformed, unreadable = load_records(paths)
    summary = ReportSummary(records=len(records), bench_records=sum(1 for r in records if is_bench(r)),
                            statuses=dict(Counter(str(r.get("status", "?")) for r in records)),
                            malformed=malformed, unreadable=unreadable)
    if not records:
        return summary
    summary.waterfall = [turn_waterfall(r) for r in last_turns(records, last)]
    summary.groups = group_stats(records)
    try:
        from launch import report_charts
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("matplotlib"):
            raise ReportError("needs matplotlib: pip install 'rocky-relay[server]'") from exc
        raise
    out_dir.mkdir(parents=True, exist_ok=True)
    if summary.waterfall:
        summary.figures["waterfall"] = report_charts.draw_waterfall(summary.waterfall, out_dir / FILES["waterfall"])
    if summary.groups:
        summary.figures["latency"] = report_charts.draw_latency(summary.groups, out_dir / FILES["latency"])
        summary.figures["stages"] = report_charts.draw_stages(summary.groups, out_dir / FILES["stages"])
    summary.files = {name: out_dir / FILES[name] for name in summary.figures}
    summary.files["markdown"] = out_dir / FILES["markdown"]
    summary.files["markdown"].write_text(report_charts.markdown(summary), encoding="utf-8")
    return summary


def default_paths() -> list[Path]:
    return [p for p in (DEFAULT_TURNS,) if p.exists()] + sorted(DEFAULT_BENCH.glob("*.jsonl"))


def cmd_report(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or default_paths()
    try:
        summary = report(paths, Path(args.out), last=args.last)
    except ReportError as exc:
        print(f"rocky-relay report: {exc}", file=sys.stderr)
        return 2
    for path in summary.unreadable:
        print(f"rocky-relay report: cannot read {path}", file=sys.stderr)
    if summary.malformed:
        print(f"rocky-relay report: skipped {len(summary.malformed)} malformed lines "
              f"({', '.join(summary.malformed[:5])}{' ...' if len(summary.malformed) > 5 else ''})", file=sys.stderr)
    if not summary.records:
        where = ", ".join(map(str, paths)) or f"{DEFAULT_TURNS} or {DEFAULT_BENCH}/*.jsonl"
        print(f"rocky-relay report: no turn records in {where}; "
              "run a turn (rocky-relay say ...) or rocky-relay bench first", file=sys.stderr)
        return 1
    print(f"{summary.records} turn records -> " + ", ".join(str(p) for p in summary.files.values()))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `report` to the CLI; matplotlib is imported only when it runs (the Pi's edge set lacks it)."""
    parser = subparsers.add_parser("report", help="charts and a Markdown summary from turn and benchmark records")
    parser.add_argument("paths", nargs="*", metavar="JSONL",
                        help=f"turn records or folders of them (default: {DEFAULT_TURNS} and {DEFAULT_BENCH}/*.jsonl)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--last", type=int, default=12, metavar="N", help="turns in the waterfall (default 12)")
    parser.set_defaults(func=cmd_report)
