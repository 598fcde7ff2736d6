"""Tools with the real default model (Qwen2.5-Coder-1.5B-Instruct) in a launched typed set of real processes:
'what time is it' is answered with the real time, a sum of two 4-digit numbers is computed, and a 3-second
timer it sets rings on the session that asked."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus.messages import Transcript, TurnRecord
from bus.push_to_talk import new_turn_id
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver
from tests.helpers import processes_mentioning

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def qwen_set() -> Iterator[tuple[TurnDriver, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="rr-tools-qwen-"))
    config = load_config(None, ["llm.temperature=0", "tts.backend=tone", "player.backend=wav",
                                f"bus.pub=ipc://{folder}/pub", f"bus.sub=ipc://{folder}/sub",
                                f"player.path={folder}/r-{{turn}}.wav", f"logger.path={folder}/turns.jsonl",
                                f"tools.timers_path={folder}/timers.json", f"llm.memory_dir={folder}/memory",
                                "logger.stage_timeout_s=90"])  # a shared 2-core box: a tool round can take long
    try:
        with Supervisor(config, config.sets["typed"], log_dir=folder / "actors") as supervisor:
            supervisor.start(timeout_s=240)
            driver = TurnDriver(bus_address(config), session="kitchen")
            try:
                yield driver, folder
            finally:
                driver.close()
    finally:
        for pid in processes_mentioning(str(folder)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def times_in(text: str) -> list[tuple[int, int]]:
    """Clock times written in `text` ("12:31 AM", "00:31"), as 24-hour (hour, minute) candidates."""
    found = []
    for hour, minute, half in re.findall(r"\b(\d{1,2}):(\d{2})\s*([AaPp]\.?[Mm]\.?)?", text):
        h, m = int(hour), int(minute)
        if half:
            h = h % 12 + (12 if half.lower().startswith("p") else 0)
        found.append((h, m))
    return found


def test_what_time_is_it_is_answered_with_the_real_time(qwen_set: tuple[TurnDriver, Path]) -> None:
    driver, _folder = qwen_set
    record = driver.typed_turn("What time is it?", timeout_s=180)
    now = datetime.now().astimezone()
    assert record["status"] == "ok", (record["error"], record["text_out"])
    assert [t["name"] for t in record["tools"]] == ["get_time"] and record["tool_ms"] is not None
    said = times_in(record["text_out"])
    near = {((now + timedelta(minutes=d)).hour, (now + timedelta(minutes=d)).minute) for d in (-1, 0, 1)}
    assert said and set(said) & near, (record["text_out"], now)


def test_a_sum_of_two_four_digit_numbers_is_computed(qwen_set: tuple[TurnDriver, Path]) -> None:
    driver, _folder = qwen_set
    record = driver.typed_turn("What is 4821 plus 7396?", timeout_s=180)
    assert record["status"] == "ok", (record["error"], record["text_out"])
    (call,) = record["tools"]
    assert call["name"] == "calculate" and call["result"] == "12217", call
    assert "12217" in record["text_out"].replace(",", ""), record["text_out"]


def test_a_timer_it_sets_rings_on_the_session_that_asked(qwen_set: tuple[TurnDriver, Path]) -> None:
    driver, _folder = qwen_set
    turn = new_turn_id()
    driver.client.publish(Transcript(session="kitchen", turn=turn, text="Set a timer for 3 seconds.", source="typed"))
    records: dict[str, dict[str, Any]] = {}  # the asking turn's and the ring's, in whichever order they end
    deadline = time.monotonic() + 240
    while len(records) < 2 and time.monotonic() < deadline:
        env = driver.client.recv(timeout_ms=200)
        if env is not None and isinstance(env.msg, TurnRecord) and env.msg.session == "kitchen":
            records["timer" if env.msg.record["source"] == "timer" else "asked"] = env.msg.record
    assert set(records) == {"asked", "timer"}, f"only {sorted(records)} within 240 s"
    asked, ring = records["asked"], records["timer"]
    assert asked["status"] == "ok" and asked["turn"] == turn, (asked["error"], asked["text_out"])
    (call,) = asked["tools"]
    assert call["name"] == "set_timer" and call["ok"] and float(call["args"]["seconds"]) == 3, call
    assert ring["status"] == "ok" and "timer is done" in ring["spoken_text"]
    assert ring["tools"][0]["args"]["set_in_turn"] == turn
