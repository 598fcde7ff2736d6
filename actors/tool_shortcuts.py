"""Calls a question names outright: made without asking the model to write them.

A question that names the time or a sum of numbers is sent to its tool anyway (`llm.tool_hints`); writing
`{"name": "calculate", "arguments": {"expression": "2 + 2"}}` costs this model ~20 tokens, about 2 s on two
cores, before the answer can begin. When the question itself holds everything the call needs (get_time takes
nothing; the sum is written in the question), the call is made at once and the model only words the result.
Timers are left to the model: their seconds and labels come in too many phrasings.
"""

from __future__ import annotations

import re
from typing import Any

from actors.tools_builtin import OPERATOR_WORDS

OPERATOR = r"(\+|-|\*|/|\u00d7|\u00f7|plus|minus|times|divided by|multiplied by)"
"""The operators taken from a question ("x" and "over" are left out: too often not arithmetic)."""
ARITHMETIC = re.compile(rf"\d[\d,.]*(?:\s*{OPERATOR}\s*\d[\d,.]*)+", re.IGNORECASE)
TIME = re.compile(r"\b(what time|time is it|what day|the date)\b", re.IGNORECASE)
LEFT_TO_THE_MODEL = re.compile(r"\b(timers?|alarms?|remind|in \w+ (minutes?|hours?|days?))\b", re.IGNORECASE)


def direct_call(question: str) -> tuple[str, dict[str, Any]] | None:
    """(tool, arguments) when `question` holds the whole call, else None (the model writes it)."""
    if LEFT_TO_THE_MODEL.search(question):
        return None
    if sum_ := ARITHMETIC.search(question):
        expression = re.sub(rf"\s*{OPERATOR}\s*", lambda op: f" {OPERATOR_WORDS.get(op[1].lower(), op[1])} ",
                            sum_[0].rstrip(".,"), flags=re.IGNORECASE)
        return "calculate", {"expression": expression.strip()}  # as the model would write it: "4821 + 7396"
    if TIME.search(question):
        return "get_time", {}
    return None
