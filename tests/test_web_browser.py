"""The browser page in a real headless Chromium, its microphone fed from a WAV, against the real models.

One `server` set plus the `web` gateway serves the module (every actor its own process on a real bus). The
page is driven as a person would: the space bar held (a real key-down and key-up), a finger (a touch
pointer) pressing to cut Rocky off, the mouse held in a second window. What the page shows and what it
played are read from the page itself (`window.rocky`); the records from the logger's file. A screenshot of
each state goes to the test's folder, or, with ROCKY_RELAY_SCREENSHOTS=docs/screenshots, where the README
shows them (web-STATE.png). Skips when Debian's chromium or chromedriver is missing.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from launch.config import load_config
from launch.supervisor import Supervisor
from tests.test_web_gateway import leave_nothing

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
QUESTION = ROOT / "launch" / "samples" / "prompt-3s.wav"
QUESTION_MS = 3208
SHOTS_ENV = "ROCKY_RELAY_SCREENSHOTS"
pytestmark = [pytest.mark.models, pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                                     reason="needs Debian chromium and chromium-driver")]
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@dataclass
class Live:
    folder: Path
    url: str
    config_file: Path
    browser: Any
    shots: Path

    def records(self, session: str) -> list[dict[str, Any]]:
        path = self.folder / "turns.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["session"] == session]


def chromium(extra: tuple[str, ...] = ()) -> Any:
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={QUESTION}%noloop",
                 "--window-size=420,720", *extra):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    folder = Path(tempfile.mkdtemp(prefix="rr-webui-"))
    config_file = folder / "rocky-relay.toml"
    config_file.write_text(f'[bus]\npub = "ipc://{folder}/pub"\nsub = "ipc://{folder}/sub"\n')
    # gemma, the embedded small model: these tests are about the page, and 2 shared cores with Chromium
    # beside them kept Qwen past the logger's stage deadline; that deadline gets room for the same reason.
    config = load_config(config_file, [f"logger.path={folder}/turns.jsonl", "web.port=0",
                                       f"web.state_dir={folder}/web", "llm.model=gemma-3-270m",
                                       "logger.stage_timeout_s=120"])
    supervisor = Supervisor(config, [*config.sets["server"], "web"], log_dir=folder / "actors")
    browser = None
    try:
        readies = supervisor.start(timeout_s=240)
        browser = chromium()
        yield Live(folder, readies["web"].backend, config_file, browser, Path(os.environ.get(SHOTS_ENV, folder)))
    finally:
        if browser is not None:
            browser.quit()
        supervisor.stop()
        leave_nothing(folder)


def page(browser: Any) -> dict[str, Any]:
    found: dict[str, Any] = browser.execute_script("return window.rocky")
    return found


def wait(browser: Any, what: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 90.0) -> dict[str, Any]:
    """The page's state once `check` holds (WebDriverWait polls it), or a failure saying what it showed."""
    try:
        WebDriverWait(browser, timeout_s, poll_frequency=0.05).until(lambda b: check(page(b)))
    except Exception as exc:
        raise AssertionError(f"page never showed {what}: {page(browser)}") from exc
    return page(browser)


def shot(live: Live, browser: Any, state: str) -> None:
    live.shots.mkdir(parents=True, exist_ok=True)
    path = live.shots / f"web-{state}.png"
    assert browser.save_screenshot(str(path)) and path.read_bytes().startswith(b"\x89PNG")


def hold_space(browser: Any, screenshot: Live | None = None) -> int:
    """Space held for the whole question (the page's own count of audio sent), then released; the turn id."""
    ActionChains(browser).key_down(Keys.SPACE).perform()
    turn = wait(browser, "the turn of the press", lambda p: p["state"] == "listening" and p["turn"] > 0)["turn"]
    wait(browser, "the question sent", lambda p: p["stats"]["sentMs"] >= QUESTION_MS + 200)
    if screenshot:
        shot(screenshot, browser, "listening")
    ActionChains(browser).key_up(Keys.SPACE).perform()
    return int(turn)


def touch(browser: Any) -> Any:
    """Actions of a touch pointer (a phone's finger), kept down between `perform`s until its pointer_up."""
    return ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))  # type: ignore[no-untyped-call]


def open_page(live: Live, browser: Any) -> dict[str, Any]:
    browser.get(live.url)
    return wait(browser, "ready", lambda p: p["state"] == "ready")


def test_a_spoken_turn_in_the_page_is_heard_answered_and_played(live: Live) -> None:
    browser = live.browser
    session = open_page(live, browser)["session"]
    shot(live, browser, "ready")
    turn = hold_space(browser, screenshot=live)
    thinking = wait(browser, "thinking after the release", lambda p: p["state"] in ("thinking", "speaking"))
    if thinking["state"] == "thinking":
        shot(live, browser, "thinking")
    wait(browser, "speaking", lambda p: p["state"] == "speaking")
    shot(live, browser, "speaking")
    done = wait(browser, "the turn's record", lambda p: p["record"] is not None and p["stats"]["finished"] == 1)
    shot(live, browser, "timings")
    assert done["record"]["status"] == "ok", done
    assert done["heard"].strip() and done["reply"].strip() and done["heard"] == done["record"]["text_in"]
    assert browser.find_element(By.ID, "reply").text == done["reply"]
    stats = done["stats"]
    assert stats["bytes"] > 0 and stats["started"] == 1 and stats["playedMs"] > 300 and stats["foreign"] == 0
    assert abs(stats["playedMs"] - stats["scheduledMs"]) < 50  # every chunk it was sent was played
    [record] = live.records(session)
    assert record["turn"] == turn and record["release_to_first_audio_ms"] is not None
    assert record["playback_finished_at"] > record["first_audio_at"] > record["release_at"]


def test_pressing_again_while_rocky_speaks_cuts_him_off(live: Live) -> None:
    browser = live.browser
    session = open_page(live, browser)["session"]
    first = hold_space(browser)
    wait(browser, "speaking", lambda p: p["state"] == "speaking")
    finger = touch(browser)  # barge-in with a finger: silent at once, a new turn listens
    finger.pointer_action.move_to(browser.find_element(By.ID, "talk")).pointer_down()
    finger.perform()
    after = wait(browser, "a new turn", lambda p: p["state"] == "listening" and p["turn"] != first)
    assert after["stats"]["stopped"] == 1
    finger.pointer_action.pointer_up()
    finger.perform()
    wait(browser, "the second turn's record", lambda p: p["record"] is not None, timeout_s=120)
    records = {r["turn"]: r for r in live.records(session)}
    assert records[first]["status"] == "interrupted" and records[first]["interrupt_to_silence_ms"] is not None
    assert records[first]["played_at_stop_ms"] is not None


def test_two_tabs_at_once_each_hear_only_their_own_turn(live: Live) -> None:
    browser = live.browser
    open_page(live, browser)
    windows = [browser.current_window_handle]
    browser.switch_to.new_window("window")
    windows.append(browser.current_window_handle)
    open_page(live, browser)
    talk = browser.find_element(By.ID, "talk")
    ActionChains(browser).click_and_hold(talk).perform()  # the second window holds with the pointer ...
    browser.switch_to.window(windows[0])
    ActionChains(browser).key_down(Keys.SPACE).perform()  # ... while the first holds the space bar
    pages = []
    for handle in windows:
        browser.switch_to.window(handle)
        pages.append(wait(browser, "the question sent", lambda p: p["stats"]["sentMs"] >= QUESTION_MS + 200))
    ActionChains(browser).release(talk).perform()
    browser.switch_to.window(windows[0])
    ActionChains(browser).key_up(Keys.SPACE).perform()
    done = []
    for handle in windows:
        browser.switch_to.window(handle)
        done.append(wait(browser, "its record", lambda p: p["record"] is not None and p["stats"]["finished"] == 1,
                         timeout_s=180))
    browser.switch_to.window(windows[1])
    browser.close()
    browser.switch_to.window(windows[0])
    assert done[0]["session"] != done[1]["session"] and done[0]["turn"] != done[1]["turn"]
    for shown in done:
        assert shown["record"]["status"] == "ok" and shown["stats"]["foreign"] == 0, shown
        [record] = live.records(shown["session"])
        assert record["turn"] == shown["turn"] and record["text_in"] == shown["heard"]


def test_a_press_with_nothing_said_shows_the_error(live: Live) -> None:
    browser = live.browser
    open_page(live, browser)
    ActionChains(browser).key_down(Keys.SPACE).perform()
    wait(browser, "the microphone open", lambda p: p["state"] == "listening" and p["stats"]["sentMs"] > 0)
    ActionChains(browser).key_up(Keys.SPACE).perform()  # the recording's leading silence only
    shown = wait(browser, "the error", lambda p: p["state"] == "error")
    shot(live, browser, "error")
    assert shown["problem"].startswith("[stt]") and "speech" in shown["problem"], shown


def test_a_lan_page_needs_the_pairing_token_and_shows_a_lost_link(live: Live) -> None:
    """The gateway as `--lan` makes it (HTTPS, token), here on loopback with web.https = true."""
    config = load_config(live.config_file, ["web.port=0", "web.https=true", f"web.state_dir={live.folder}/lan"])
    gateway = Supervisor(config, ["web"], log_dir=live.folder / "lan-actors")
    browser = None
    try:
        url = gateway.start(timeout_s=60)["web"].backend
        assert url.startswith("https://")
        browser = chromium(("--ignore-certificate-errors",))  # the self-signed certificate a phone accepts once
        browser.get(url)
        refused = wait(browser, "the refusal", lambda p: p["state"] == "error")
        assert "pairing token" in refused["problem"] and not refused["session"]
        assert browser.find_element(By.ID, "pairing").is_displayed()
        shot(live, browser, "refused")
        log = (live.folder / "lan-actors" / "web.log").read_text()
        assert "pairing token missing or wrong" in log and "web_tab_open" not in log
        token = (live.folder / "lan" / "pairing-token").read_text().strip()
        browser.get(f"{url}#token={token}")
        paired = wait(browser, "ready once paired", lambda p: p["state"] == "ready")
        assert paired["session"].startswith("web-")
        assert browser.execute_script("return [window.isSecureContext, location.hash]") == [True, ""]
        pid = gateway.pid("web")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # frozen: its socket stays open, but its heartbeats stop
        try:
            wait(browser, "the link lost to silence", lambda p: p["state"] == "lost", timeout_s=30)
        finally:
            os.kill(pid, signal.SIGCONT)
        again = wait(browser, "ready again, a new session", lambda p: p["state"] == "ready", timeout_s=60)
        assert again["session"] != paired["session"]  # the token was kept: no pairing again
        gateway.stop()
        wait(browser, "the link lost", lambda p: p["state"] == "lost", timeout_s=30)
        shot(live, browser, "lost")
        logs = "".join(p.read_text() for p in (live.folder / "lan-actors").glob("*.log"))
        assert token not in logs
    finally:
        if browser is not None:
            browser.quit()
        gateway.stop()
