"""Calls a question names outright: made without asking the model to write them.

A question that names the time or a sum of numbers is sent to its tool anyway (`llm.tool_hints`); writing
`{"name": "calculate", "arguments": {"expression": "2 + 2"}}` costs this model ~20 tokens, about 2 s on two
cores, before the answer can begin. When the question itself holds everything the call needs (get_time takes
nothing; the sum is written in the question), the call is made at once and the model only words the result.
Timers are left to the model: their seconds and labels come in too many phrasings.

Such a call's answer needs no model either (`worded`): "4821 plus 7396 is 12217.", "It is 4:38 PM." Asking the
model to word it costs a second prompt evaluation and its tokens, ~1 s more on two cores (the bench's three
sums took 1.2-2.4 s from release to the first sound, its other questions ~0.7 s).
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


SYMBOL_WORDS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
"""How `direct_call`'s expression is read back in the answer."""
DATE = re.compile(r"\b(what day|the date|today)\b", re.IGNORECASE)


def worded(question: str, name: str, arguments: dict[str, Any], result: str) -> str | None:
    """The spoken answer to a `direct_call`, from its tool's result; None: let the model word it."""
    if name == "calculate":
        said = " ".join(SYMBOL_WORDS.get(token, token) for token in str(arguments.get("expression", "")).split())
        return f"{said} is {result}." if said else None
    if name == "get_time":  # actors/tools_builtin.get_time: "4:38 PM on Wednesday 2 December 2026 (UTC)"
        clock, _, rest = result.partition(" on ")
        day = rest.partition(" (")[0]
        if not clock or not day:
            return None
        return f"Today is {day}." if DATE.search(question) else f"It is {clock}."
    return None
