"""The logger's settings and fixed periods (actors/logger.py is the actor)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

RETRY_S = 2.0
"""A record the disk refused is tried again this often."""
DEADLINE_CHECK_S = 0.25
"""How often open turns are checked against their deadlines (from `handle` too: a flood starves on_idle)."""
RECOVERED_TIMEOUT_S = 10.0
"""A turn replayed after a logger restart may have lost its end: it gets this long, not turn_timeout_s."""


@dataclass
class LoggerSettings:
    path: str = "logs/turns.jsonl"
    """Where turn records are appended."""
    turn_timeout_s: float = 120.0
    """A turn with no news for this long is written out as timed out."""
    stage_timeout_s: float = 15.0
    """A turn whose next stage (mic after the release, stt, llm, persona, tts, player) shows no progress on any
    turn for this long ends with an error naming that stage; the player gets the audio it still has to play on
    top. Above the backends' own timeouts (llm first token 10 s), so their more precise errors come first."""
    max_bytes: int = 10_000_000
    """The record file is rotated (turns.jsonl.1, .2, ...) before it passes this size; 0 never rotates."""
    backups: int = 5
    """Rotated files kept."""
    earcon_wait_s: float = 10.0
    """After the player died mid-turn: how long to wait for the restarted one to sound the error earcon."""


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities (a ts off the bus may be either) as null: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
