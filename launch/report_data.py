"""What `rocky-relay report` computes and draws: its stages, files and the shapes of its numbers.

Shared by launch/report.py (the numbers, no matplotlib) and launch/report_charts.py (the drawing), so
neither imports the other at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HEADLINE = "release_to_first_audio_ms"
STAGES = (("stt_ms", "speech to text", "transcript"), ("llm_first_token_ms", "LLM first token", "first token"),
          ("persona_ms", "persona first clause", "first clause"),
          ("tts_first_chunk_ms", "TTS first chunk", "first chunk"))
"""timing.py's chained stages in order (record field, label, the mark it ends at): each starts where the
previous ended, so their sum from the origin is where the first chunk reached the player."""
PLAYER_STAGE = ("player", "chunk to first audio")
"""What follows the chain: the first chunk's way through the player to the device (and the bus hops)."""
FILES = {"waterfall": "waterfall.png", "latency": "latency.png", "stages": "stages.png", "markdown": "report.md"}


class ReportError(Exception):
    """The report cannot be drawn at all (e.g. matplotlib is missing)."""


@dataclass(frozen=True)
class Segment:
    stage: str
    """'hold' (press to release), a STAGES field, 'player' (first chunk to first audio) or 'playback'."""
    start_ms: float
    length_ms: float


@dataclass(frozen=True)
class TurnWaterfall:
    label: str
    """The question (shortened), then when, how it came and, unless ok, its status."""
    origin: str
    """'release' for a spoken turn, 'transcript' for a typed one: where 0 ms is."""
    segments: tuple[Segment, ...]
    marks: dict[str, float]
    """press, release, transcript, first token, first clause, first chunk, first audio, end: ms from origin."""
    headline_ms: float | None
    """release_to_first_audio_ms as recorded."""


@dataclass(frozen=True)
class GroupStats:
    pipeline: str
    variant: str
    scenario: str
    n: int
    """How many records of the group have a release_to_first_audio_ms (the values behind p50/p95)."""
    p50: float | None
    p95: float | None
    stage_p50: dict[str, float | None]
    """Each stage's own median (report.md only: medians of parts do not add up to the median whole)."""
    median_turn: tuple[Segment, ...] = ()
    """The stages of the group's median turn (the one whose release to first audio is the p50), from its
    origin up to its first audio: they sum to the p50, which is what the stage chart stacks."""

    @property
    def label(self) -> str:
        from launch.report_labels import group_words

        return group_words(self.pipeline, self.variant, self.scenario)


@dataclass
class ReportSummary:
    records: int = 0
    bench_records: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)
    """'path:line' of every line that is not a JSON turn record."""
    unreadable: list[str] = field(default_factory=list)
    waterfall: list[TurnWaterfall] = field(default_factory=list)
    groups: list[GroupStats] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    """The drawn charts by name, kept so a caller (a test) can check what each bar shows."""
