"""A timer ringing in the real page, in headless Chromium (the helpers of tests/test_web_browser.py).

The set runs its fast backends (fixed transcript, echo reply, tone speech) with the tools actor, so these
tests are about the page: a spoken turn first (a person's press, which also lets the page play sound), then
a timer set for the tab's session on the bus, as the llm sets one (tests/test_timers.py). The page must show
the ring, play it and report it; a press while it rings must cut it off.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.handshake import prove_path
from bus.sockets import BusClient
from launch.config import bus_address, load_config
from tests.test_timers import call
from tests.test_web_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    SHOTS_ENV,
    Live,
    chromium,
    hold_space,
    open_page,
    shot,
    touch,
    wait,
)
from tests.test_web_gateway import Gateway, leave_nothing, records_of, start_gateway

pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian chromium and chromium-driver")
from selenium.webdriver.common.by import By  # noqa: E402

LONG_LABEL = "soup on the stove for the whole family and the neighbours coming round tonight"
"""A ring of ~20 beeps (tone speech: 0.16 s a word), long enough to be pressed during."""


@pytest.fixture(scope="module")
def ringing() -> Iterator[tuple[Live, BusClient]]:
    folder = Path(tempfile.mkdtemp(prefix="rr-webring-ui-"))
    names = ["proxy", "logger", "vad", "stt", "tools", "llm", "persona", "tts", "web"]
    supervisor, browser, client = None, None, None
    try:
        supervisor, url = start_gateway(folder, names, [f"tools.timers_path={folder}/timers.json"])
        client = BusClient(bus_address(load_config(folder / "rocky-relay.toml", [])), ("tool.",), name="test")
        prove_path(client)
        browser = chromium()
        shots = Path(os.environ.get(SHOTS_ENV, folder))  # web-ringing.png
        yield Live(folder, url, folder / "rocky-relay.toml", browser, shots), client
    finally:
        if browser is not None:
            browser.quit()
        if client is not None:
            client.close()
        if supervisor is not None:
            supervisor.stop()
        leave_nothing(folder)


def spoken_turn(live: Live) -> str:
    """A fresh page, a question asked and answered in it; its session."""
    session = str(open_page(live, live.browser)["session"])
    hold_space(live.browser)
    wait(live.browser, "the answer played", lambda p: p["record"] is not None and p["stats"]["finished"] == 1)
    return session


def test_a_timer_rings_in_the_page_that_set_it_shown_and_played(ringing: tuple[Live, BusClient]) -> None:
    live, client = ringing
    browser = live.browser
    session = spoken_turn(live)
    asked = wait(browser, "ready", lambda p: p["state"] == "ready")["turn"]
    assert call(client, session, 1, "set_timer", seconds=2, label="tea").ok
    rang = wait(browser, "ringing", lambda p: p["state"] == "ringing")
    shot(live, browser, "ringing")
    assert rang["ring"]["turn"] == rang["turn"] != asked and rang["ring"]["label"] == "tea"
    note = browser.find_element(By.ID, "ring")
    assert note.is_displayed() and "tea timer" in note.text
    done = wait(browser, "the ring played and recorded", lambda p: p["stats"]["finished"] == 2 and p["record"])
    assert done["reply"] == "Ding ding! Your tea timer is done." == browser.find_element(By.ID, "reply").text
    assert done["record"]["status"] == "ok" and done["state"] == "ready", done
    stats = done["stats"]
    assert stats["started"] == 2 and stats["stopped"] == 0 and stats["foreign"] == 0
    [record] = [r for r in live.records(session) if r["turn"] == rang["turn"]]
    assert record["source"] == "timer" and record["status"] == "ok"
    assert record["playback_finished_at"] > record["first_audio_at"]


def test_pressing_while_the_timer_rings_cuts_it_off(ringing: tuple[Live, BusClient]) -> None:
    live, client = ringing
    browser = live.browser
    session = spoken_turn(live)
    assert call(client, session, 2, "set_timer", seconds=1, label=LONG_LABEL).ok
    rang = wait(browser, "the ring playing", lambda p: p["state"] == "ringing" and p["stats"]["started"] == 2)
    finger = touch(browser)
    finger.pointer_action.move_to(browser.find_element(By.ID, "talk")).pointer_down()
    finger.perform()
    after = wait(browser, "a new turn", lambda p: p["state"] == "listening" and p["turn"] != rang["turn"])
    finger.pointer_action.pointer_up()
    finger.perform()
    assert after["stats"]["stopped"] == 1 and after["stats"]["finished"] == 1  # the ring was cut, not played out
    assert not browser.find_element(By.ID, "ring").is_displayed()
    [record] = records_of(Gateway(live.url, live.folder), session, rang["turn"])
    assert record["source"] == "timer" and record["status"] == "interrupted", record
    assert record["interrupt_to_silence_ms"] is not None and record["played_at_stop_ms"] is not None
