"""The built-in tools and the llm's tool-call parsing: arithmetic computed (never eval), the local time,
timers kept in a private file, a model's call read in the forms it writes."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actors.llm_tools import apology, opens_call, parse_call
from actors.timers import TimerStore, seconds_until, spoken_duration
from actors.tools_builtin import ToolError, calculate, get_time


@pytest.mark.parametrize(("expression", "value"), [
    ("4821 + 7396", "12217"), ("4821 plus 7396", "12217"), ("(2 + 3) * 4", "20"), ("7 / 2", "3.5"),
    ("2 ** 10", "1024"), ("1,234 x 56", "69104"), ("-3 + 10 % 4", "-1"), ("10 / 4 * 2", "5"),
])
def test_arithmetic_is_computed(expression: str, value: str) -> None:
    assert calculate({"expression": expression}) == value


@pytest.mark.parametrize(("expression", "why"), [
    ("__import__('os').system('true')", "only numbers"), ("1 / 0", "division by zero"),
    ("9 ** 99999", "exponent"), ("1" * 300, "too long"), ("", "needs an expression"), ("2 +", "not an arithmetic"),
    ("10 ** 20", "too big"),
])
def test_anything_else_is_refused_with_the_reason(expression: str, why: str) -> None:
    with pytest.raises(ToolError, match=why):
        calculate({"expression": expression})


def test_the_time_is_local_and_sayable() -> None:
    fixed = datetime(2026, 12, 2, 15, 4, tzinfo=UTC)
    assert get_time({}, clock=lambda: fixed) == "3:04 PM on Wednesday 2 December 2026 (UTC)"
    before = datetime.now().astimezone()
    said = get_time({})
    after = datetime.now().astimezone()
    assert said.split(" on ")[0] in {t.strftime("%I:%M %p").lstrip("0") for t in (before, after)}  # a minute may turn
    assert after.strftime("%A") in said or before.strftime("%A") in said


def test_a_call_is_read_in_the_forms_the_model_writes() -> None:
    assert opens_call("<tool") is None and opens_call("``") is None and opens_call("  ") is None
    assert opens_call("<tool_call>") and opens_call("```json") and opens_call('{"name"')
    assert opens_call("The time") is False and opens_call("<b>") is False
    assert parse_call('{"name": "get_time", "arguments": {}}') == ("get_time", {})
    assert parse_call('```json\n{\n "name": "calculate",\n "arguments": {"expression": "1+1"}\n}\n```') == (
        "calculate", {"expression": "1+1"})
    assert parse_call('<tool_call>{"name": "x", "arguments": "{\\"a\\": 1}"}</tool_call>') == ("x", {"a": 1})
    for bad, why in (("no json", "no JSON"), ('{"name": ', "not valid"), ('{"arguments": {}}', "named no tool"),
                     ('{"name": "x", "arguments": [1]}', "not an object")):
        with pytest.raises(ToolError, match=why):
            parse_call(bad)
    assert apology("it timed out.") == "Sorry, friend, I could not do that: it timed out."


def test_timers_persist_privately_and_ring_once(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "state" / "timers.json"
    store = TimerStore(path, clock=lambda: now[0])
    tea = store.add("kitchen", 3, "tea", turn=7)
    store.add("garage", "60", "")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = TimerStore(path, clock=lambda: now[0])  # what a restarted actor finds
    assert [t.label for t in again.of_session("kitchen")] == ["tea"] and again.timers[tea.id] == tea
    assert again.due() == []
    now[0] += 3
    assert again.due() == [tea] and again.due() == []
    assert [t.session for t in TimerStore(path, clock=lambda: now[0]).timers.values()] == ["garage"]
    assert spoken_duration(125) == "2 minutes 5 seconds" and spoken_duration(3600) == "1 hour"


def test_timer_arguments_are_checked_and_cancel_is_per_session(tmp_path: Path) -> None:
    store = TimerStore(tmp_path / "t.json")
    for seconds in (0, -5, "soon", True, None, 10**9):
        with pytest.raises(ToolError, match="seconds"):
            store.add("kitchen", seconds)
    store.add("kitchen", 30, "eggs")
    store.add("kitchen", 60, "pasta")
    store.add("garage", 60, "pasta")
    assert [t.label for t in store.cancel("kitchen", "pasta")] == ["pasta"]
    assert [t.session for t in store.of_session("garage")] == ["garage"]
    assert [t.label for t in store.cancel("kitchen")] == ["eggs"] and store.of_session("kitchen") == []


def test_a_broken_timers_file_is_set_aside_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    path.write_text("{not json")
    store = TimerStore(path)
    assert store.timers == {} and "set aside" in store.problem
    assert (tmp_path / "timers.json.bad").read_text() == "{not json"


def test_an_alarm_is_a_timer_until_the_next_such_clock_time() -> None:
    evening = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    assert seconds_until("19:05", evening) == 65 * 60
    assert seconds_until("7:30 pm", evening) == 90 * 60 and seconds_until("6 PM", evening) == 24 * 3600
    assert seconds_until("07:00", evening) == 13 * 3600  # tomorrow morning
    for bad in ("soon", "25:00", "7:75", ""):
        with pytest.raises(ToolError, match="not a clock time"):
            seconds_until(bad, evening)
