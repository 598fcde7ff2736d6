"""Calls made straight from the question (actors/tool_shortcuts.py): only when it holds the whole call."""

from __future__ import annotations

import pytest

from actors.tool_shortcuts import direct_call
from actors.tools_builtin import calculate


@pytest.mark.parametrize(("question", "expected"), [
    ("What is 2 plus 2?", "4"),
    ("What is 4821 + 7396?", "12217"),
    ("what's 4,821 times 3.", "14463"),
    ("How much is 100 divided by 8?", "12.5"),
    ("What is 7 minus 10 plus 1?", "-2"),
    ("And 6 multiplied by 7?", "42"),
])
def test_a_sum_in_the_question_is_computed_from_its_own_words(question: str, expected: str) -> None:
    call = direct_call(question)
    assert call is not None and call[0] == "calculate"
    assert calculate(call[1]) == expected


def test_the_call_reads_as_the_model_would_write_it() -> None:
    assert direct_call("What is 4821 plus 7396?") == ("calculate", {"expression": "4821 + 7396"})
    assert direct_call("what is 10 divided by 4") == ("calculate", {"expression": "10 / 4"})


@pytest.mark.parametrize("question", ["What time is it?", "what day is it today", "Tell me the date."])
def test_the_time_needs_no_arguments(question: str) -> None:
    assert direct_call(question) == ("get_time", {})


@pytest.mark.parametrize("question", [
    "Set a timer for 2 seconds.",  # seconds and label: the model's
    "Remind me what time it is in 5 minutes",
    "Set an alarm for 7 plus 1",
    "What is the weather today?",  # no tool holds it
    "How many legs does a spider have?",
])
def test_what_the_question_does_not_hold_whole_is_left_to_the_model(question: str) -> None:
    assert direct_call(question) is None


def test_a_direct_call_is_answered_from_its_result_without_the_model() -> None:
    from actors.tool_shortcuts import worded

    assert worded("What is 4821 plus 7396?", "calculate", {"expression": "4821 + 7396"}, "12217") == \
        "4821 plus 7396 is 12217."
    assert worded("what is 10 divided by 4", "calculate", {"expression": "10 / 4"}, "2.5") == "10 divided by 4 is 2.5."
    result = "4:38 PM on Wednesday 2 December 2026 (CET)"
    assert worded("What time is it?", "get_time", {}, result) == "It is 4:38 PM."
    assert worded("What's the date today?", "get_time", {}, result) == "Today is Wednesday 2 December 2026."
    assert worded("What time is it?", "get_time", {}, "garbled") is None  # the model words what we cannot
    assert worded("Set a timer", "set_timer", {"seconds": 3}, "set") is None
