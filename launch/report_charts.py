"""What `rocky-relay report` writes: the charts and report.md, from numbers launch/report.py computed.

Figures are built with matplotlib's object API (`Figure`, saved through Agg) rather than pyplot, so
nothing touches a display or pyplot's global state. Each drawn bar carries a gid (`row:stage`,
`p50:group`...) so a test can find it and check that it is as long as the number says.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from launch.report_data import FILES, HEADLINE, PLAYER_STAGE, STAGES, GroupStats, ReportSummary, TurnWaterfall

COLORS = {"hold": "#d9d9d9", "stt_ms": "#4c72b0", "llm_first_token_ms": "#dd8452", "persona_ms": "#55a868",
          "tts_first_chunk_ms": "#c44e52", "player": "#8172b3", "playback": "#b8c9a3"}
NAMES = {"hold": "button held", **{key: label for key, label, _ in STAGES}, PLAYER_STAGE[0]: PLAYER_STAGE[1],
         "playback": "playback"}
STAGES_TITLE = ("Where the median turn's time goes: the stages of the turn whose release to first audio\n"
                "is its group's p50, so they add up to it")
P50, P95 = "#4c72b0", "#c6d4ea"


def _save(fig: Figure, path: Path) -> Figure:
    FigureCanvasAgg(fig)  # Agg explicitly: no display, whatever backend the environment asks for
    fig.savefig(path, dpi=110)
    return fig


def draw_waterfall(turns: list[TurnWaterfall], path: Path) -> Figure:
    """One row per turn, oldest on top. The press is usually seconds before the release, so the axis
    starts just left of 0 and the hold bar is cut, with its length written in; a long playback is cut at
    the right the same way, so the stages up to the first audio keep their width."""
    fig = Figure(figsize=(11, 2.2 + 0.42 * len(turns)), layout="constrained")
    ax = fig.add_subplot()
    # Scale on what decides the headline, not the hold before it or the playback after it.
    reach = max((max([m for k, m in t.marks.items() if k not in ("press", "end")] + [1.0]) for t in turns),
                default=1.0)
    left, right = -0.1 * reach, 1.3 * reach
    named: set[str] = set()
    for row, turn in enumerate(turns):
        for seg in turn.segments:
            bar = ax.barh(row, seg.length_ms, left=seg.start_ms, height=0.62, color=COLORS[seg.stage],
                          label=NAMES[seg.stage] if seg.stage not in named else None)
            bar.patches[0].set_gid(f"{row}:{seg.stage}")
            named.add(seg.stage)
        _turn_marks(ax, row, turn, left, right)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(left, right)
    ax.set_ylim(len(turns) - 0.5, -0.5)  # oldest turn on top, as a log reads
    ax.set_yticks(range(len(turns)), [t.label for t in turns], fontsize=8)
    ax.set_xlabel("ms from the release (typed turns: from the transcript)")
    ax.set_title("Where each of the last turns' time goes, named by its question (figure: release to first audio)",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=7, fontsize=8, frameon=False)
    return _save(fig, path)


def _turn_marks(ax: Axes, row: int, turn: TurnWaterfall, left: float, right: float) -> None:
    marks = turn.marks
    if not turn.segments:
        ax.text(0, row, "  no timings recorded", va="center", fontsize=7, color="gray")
    press = marks.get("press")
    if press is not None:
        if press >= left:
            ax.plot([press], [row], marker="|", markersize=12, color="black")
        else:
            ax.text(left, row, f" held {-press / 1000:.2f} s", va="center", fontsize=7, color="dimgray")
    audio, end = marks.get("first audio"), marks.get("end")
    if audio is not None:
        ax.plot([audio], [row], marker="D", markersize=5, color="black")
        tail = f", ends at {end / 1000:.2f} s" if end is not None and end > right else ""
        ax.text(audio + 0.01 * right, row, f"{audio:.0f} ms{tail}", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "linewidth": 0})
    if end is not None and end <= right:
        ax.plot([end], [row], marker="|", markersize=12, color="dimgray")


def draw_latency(groups: list[GroupStats], path: Path) -> Figure:
    """Release to first audio per group: the p95 bar light behind, the p50 bar dark in front."""
    shown = [g for g in groups if g.p50 is not None and g.p95 is not None]
    fig = Figure(figsize=(14, 2.0 + 0.36 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    widest = max((g.p95 or 0.0 for g in shown), default=1.0)
    for row, g in enumerate(shown):
        assert g.p50 is not None and g.p95 is not None
        p95 = ax.barh(row, g.p95, height=0.7, color=P95, label="p95" if row == 0 else None)
        p50 = ax.barh(row, g.p50, height=0.45, color=P50, label="p50" if row == 0 else None)
        p95.patches[0].set_gid(f"p95:{g.label}")
        p50.patches[0].set_gid(f"p50:{g.label}")
        ax.text(g.p95 + 0.01 * widest, row, f"{g.p50:.0f} / {g.p95:.0f} ms  (n={g.n})", va="center", fontsize=8)
    ax.set_xlim(0, widest * 1.3)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_yticks(range(len(shown)), [g.label for g in shown], fontsize=8)
    ax.set_xlabel("release to first audio (ms)")
    ax.set_title("Release to first audio, p50 and p95 of each kind of turn", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def draw_stages(groups: list[GroupStats], path: Path) -> Figure:
    """Per group, its median turn's stages stacked from 0: the stack ends at the p50 it claims (the diamond),
    because these are one turn's parts, not each stage's own median."""
    shown = [g for g in groups if g.median_turn]
    fig = Figure(figsize=(14, 2.4 + 0.36 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    named: set[str] = set()
    for row, g in enumerate(shown):
        for seg in g.median_turn:
            bar = ax.barh(row, seg.length_ms, left=seg.start_ms, height=0.6, color=COLORS[seg.stage],
                          label=None if seg.stage in named else NAMES[seg.stage])
            bar.patches[0].set_gid(f"{seg.stage}:{g.label}")
            named.add(seg.stage)
        assert g.p50 is not None  # a median turn is only found for a p50
        ax.plot([g.p50], [row], marker="D", markersize=5, color="black", linestyle="none",
                label=None if HEADLINE in named else "release to first audio, p50")
        named.add(HEADLINE)
        ax.text(g.p50, row, f"  {g.p50:.0f} ms", va="center", fontsize=8)
    ax.set_xlim(0, 1.2 * max((g.p50 or 0.0 for g in shown), default=1.0))
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_yticks(range(len(shown)), [g.label for g in shown], fontsize=8)
    ax.set_xlabel("ms from the release (typed turns: from the transcript)")
    ax.set_title(STAGES_TITLE, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=6, fontsize=8, frameon=False)
    return _save(fig, path)


STAGE_COLUMNS = (*(key for key, _, _ in STAGES), PLAYER_STAGE[0])
"""The parts of release to first audio, in order: report.md's columns and the stage chart's stack."""


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _text_cell(text: str) -> str:
    """Words in a Markdown table cell: a `|` in a question must not open a column."""
    return text.replace("|", "\\|")


def markdown(summary: ReportSummary) -> str:
    statuses = ", ".join(f"{s} {n}" for s, n in sorted(summary.statuses.items()))
    lines = ["# Rocky Relay report", "",
             f"{summary.records} turn records ({summary.records - summary.bench_records} from turn logs, "
             f"{summary.bench_records} from benchmarks); status: {statuses}. Figures are milliseconds.", ""]
    if summary.malformed:
        shown = ", ".join(f"`{m}`" for m in summary.malformed[:10])
        more = f" and {len(summary.malformed) - 10} more" if len(summary.malformed) > 10 else ""
        lines += [f"Skipped {len(summary.malformed)} malformed lines: {shown}{more}.", ""]
    if summary.unreadable:
        lines += [f"Could not read: {', '.join(summary.unreadable)}.", ""]
    if summary.waterfall:
        lines += [f"## The last {len(summary.waterfall)} turns", "", f"![waterfall]({FILES['waterfall']})", "",
                  "How long each stage took, in ms; a spoken turn's clock starts at the release, a typed one's at "
                  "its transcript, so the stages up to the first audio add up to its release to first audio.", "",
                  "| turn | " + " | ".join(f"{NAMES[s]} (ms)" for s in STAGE_COLUMNS)
                  + " | release to first audio (ms) | playback (ms) |",
                  "|---|" + "---:|" * (len(STAGE_COLUMNS) + 2)]
        for turn in summary.waterfall:
            took = {seg.stage: seg.length_ms for seg in turn.segments}
            cells = [took.get(s) for s in STAGE_COLUMNS] + [turn.headline_ms, took.get("playback")]
            lines.append(f"| {_text_cell(turn.label)} | " + " | ".join(_cell(v) for v in cells) + " |")
        lines.append("")
    if summary.groups:
        lines += ["## Release to first audio", "", f"![latency]({FILES['latency']})", "",
                  f"![median turns]({FILES['stages']})", "",
                  "p50 and p95 of release to first audio (ms) per kind of turn; then the stages of the median turn "
                  "(the one whose figure is the p50), which add up to it.", "",
                  "| kind of turn | turns | p50 (ms) | p95 (ms) | "
                  + " | ".join(f"median turn: {NAMES[s]} (ms)" for s in STAGE_COLUMNS) + " |",
                  "|---|---:|---:|---:|" + "---:|" * len(STAGE_COLUMNS)]
        for g in summary.groups:
            took = {seg.stage: seg.length_ms for seg in g.median_turn}
            stages = " | ".join(_cell(took.get(s)) for s in STAGE_COLUMNS)
            lines.append(f"| {_text_cell(g.label)} | {g.n} | {_cell(g.p50)} | {_cell(g.p95)} | {stages} |")
        lines.append("")
    else:
        lines += ["No ok or interrupted turn to summarise.", ""]
    return "\n".join(lines)
