"""Checks of setting values, made when the config is loaded: a bad number or template is a start error,
not a crash or a hang at the first turn.

`RANGES` holds the bounds of each numeric setting; one not listed must at least be finite, and a duration
(`*_s`, `*_ms`) not negative, a timeout above 0. Every float must be finite (NaN compares false with
everything, so it would slip through any bound).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    above_low: bool = False
    """The value must be strictly above `low` (a duration or scale of 0 would divide by zero or spin)."""

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.above_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        low = "" if self.low is None else f"{'above' if self.above_low else 'at least'} {self.low:g}"
        high = "" if self.high is None else f"at most {self.high:g}"
        return " and ".join(part for part in (low, high) if part)


POSITIVE = Range(0, above_low=True)
NOT_NEGATIVE = Range(0)
THREADS = Range(0, 256)
"""0: the backend's own choice."""
PIN = Range(0, 63)
RATE = Range(4000, 192000)

RANGES: dict[str, Range] = {
    "vad.aggressiveness": Range(0, 3), "vad.start_frames": Range(1), "vad.stop_frames": Range(1),
    "vad.quiet_below_peak_db": Range(0, 200),
    "stt.beam_size": Range(1, 16), "stt.threads": THREADS, "stt.partial_every_ms": POSITIVE,
    "llm.max_tokens": Range(1, 32768), "llm.temperature": Range(0, 10), "llm.top_p": Range(0, 1, above_low=True),
    "llm.context_tokens": Range(16, 1 << 20), "llm.history_tokens": NOT_NEGATIVE, "llm.threads": THREADS,
    "llm.prefill_threads": THREADS,
    "persona.min_clause_chars": NOT_NEGATIVE, "persona.first_clause_words": Range(1),
    "tts.length_scale": Range(0, 10, above_low=True), "tts.threads": THREADS, "tts.sample_rate": RATE,
    "tts.espeak_wpm": Range(1, 1000), "tts.first_clause_words": Range(0, 100),
    "player.block_ms": Range(0, 1000, above_low=True), "player.volume": Range(0, 4),
    "logger.max_bytes": NOT_NEGATIVE, "logger.backups": Range(0, 1000), "logger.stage_timeout_s": Range(1, 3600),
    "button.pin": PIN, "button.poll_ms": POSITIVE, "leds.red_pin": PIN, "leds.green_pin": PIN, "leds.blue_pin": PIN,
    "audible.sample_rate": RATE, "audible.block_ms": POSITIVE, "audible.history_s": POSITIVE,
    "audible.level_db": Range(-200, 0), "audible.above_floor_db": NOT_NEGATIVE,
    "satellite.link_timeout_s": POSITIVE, "server.max_queued_turns": NOT_NEGATIVE,
    "server.priority": Range(-20, 19),
    "web.port": Range(0, 65535), "web.max_tabs": Range(1, 1000), "web.max_hold_s": POSITIVE,
}


def default_range(key: str) -> Range | None:
    """The bound of a numeric setting `RANGES` does not list, from what its name says it is."""
    if key.endswith("timeout_s"):
        return POSITIVE
    if key.endswith(("_s", "_ms")):
        return NOT_NEGATIVE
    return None


def check_numbers(sections: dict[str, Any]) -> list[str]:
    """What is wrong with the numeric settings of each section's settings object (empty: nothing)."""
    problems: list[str] = []
    for section, settings in sections.items():
        hints = typing.get_type_hints(type(settings))
        for field in dataclasses.fields(settings):
            if hints[field.name] not in (int, float):
                continue
            key, value = f"{section}.{field.name}", getattr(settings, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{key} = {value!r}: must be a finite number")
                continue
            bound = RANGES.get(key) or default_range(key)
            if bound is not None and not bound.holds(value):
                problems.append(f"{key} = {value!r}: must be {bound}")
    return problems


TEMPLATES = {"player.path": {"session": "kitchen", "turn": 1}}
"""Settings that are str.format templates, with the fields they are given."""


def check_templates(sections: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key, fields in TEMPLATES.items():
        section, _, name = key.partition(".")
        template = getattr(sections[section], name)
        try:
            template.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            known = ", ".join("{" + f + "}" for f in fields)
            problems.append(f"{key} = {template!r}: not a usable template ({type(exc).__name__}: {exc}); "
                            f"it may use {known}, and {{{{ }}}} for a literal brace")
    return problems
