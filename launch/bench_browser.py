"""The browser door of `bench --suite doors` (launch/bench_doors.py): the question said into the page.

A headless Chromium (Debian's, through selenium) opens the page of a `web` gateway that joins the bench's
set on its bus; its microphone is the same WAV as the other doors' (Chromium's fake capture device, which
starts the file again at each press, since the page opens the microphone at each press). The space bar is
held until the page has sent the whole recording, then released. The figure is the turn record's
release -> first audio: the page's key-up to the moment the page says its first reply sample played, both
moved onto the server's clock by the gateway (actors/web_tab.py), so it holds everything the browser adds:
the WebSocket both ways, the page's audio scheduling and its output. The page's own reading of the same
interval, on its own clock, is printed under the table as a check of that stamping, and so is what the
gateway, the socket and the page add after the voice's first chunk (release -> first audio less the stages
before it).

Chromium and the gateway start at the first measurement and stop when the bench process exits.
"""

from __future__ import annotations

import atexit
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT_S = 600.0
"""Longest wait for the page to reach a state: an upper bound for a loaded machine, not an expectation."""


class _Page:
    """The gateway process and the browser showing its page, made once per bench run."""

    def __init__(self, config: Any, question_wav: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        from actors.web_settings import WebSettings
        from launch.supervisor import Supervisor

        self.folder = Path(tempfile.mkdtemp(prefix="rocky-bench-web-"))
        config = copy.deepcopy(config)
        web = config.of(WebSettings)
        web.port, web.host, web.https, web.state_dir = 0, "127.0.0.1", False, str(self.folder / "web")
        self.supervisor = Supervisor(config, ["web"], log_dir=self.folder / "actors")
        self.browser: Any = None
        atexit.register(self.close)
        url = self.supervisor.start(timeout_s=120)["web"].backend
        self.question_ms = _duration_ms(question_wav)
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--use-fake-ui-for-media-stream",
                     "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={question_wav}%noloop",
                     "--autoplay-policy=no-user-gesture-required"):
            options.add_argument(flag)
        self.browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.browser.get(url)
        self.until(lambda p: p["state"] == "ready")

    def state(self) -> dict[str, Any]:
        found: dict[str, Any] = self.browser.execute_script("return window.rocky")
        return found

    def until(self, check: Any) -> dict[str, Any]:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.browser, TIMEOUT_S, poll_frequency=0.02).until(lambda _b: check(self.state()))
        return self.state()

    def ask(self) -> dict[str, Any]:
        """One spoken turn; the page's state once its record and the end of playback are in."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(self.browser).key_down(Keys.SPACE).perform()
        self.until(lambda p: p["state"] == "listening" and p["stats"]["sentMs"] >= self.question_ms)
        ActionChains(self.browser).key_up(Keys.SPACE).perform()
        finished = self.state()["stats"]["finished"]
        return self.until(lambda p: p["record"] is not None and p["stats"]["finished"] > finished)

    def close(self) -> None:
        if self.browser is not None:
            self.browser.quit()
            self.browser = None
        self.supervisor.stop()


def _duration_ms(wav: Path) -> float:
    import wave

    with wave.open(str(wav)) as w:
        return 1000.0 * float(w.getnframes()) / float(w.getframerate())


_pages: dict[int, _Page] = {}


def browser(run: Any) -> float | None:
    """Release -> first audio through the page (a `DOORS` entry; `run` is bench_doors.DoorsRun)."""
    if not CHROMEDRIVER.exists():
        print("  browser door: no /usr/bin/chromedriver (Debian chromium-driver): not measured", flush=True)
        return None
    page = _pages.get(id(run))
    if page is None:
        began = time.monotonic()
        page = _pages[id(run)] = _Page(run.config, run.question_wav)
        run.mark("browser: gateway and page start (once)", 1000 * (time.monotonic() - began))
    shown = page.ask()
    record = shown["record"]
    run.mark("browser: page's own clock, release -> first sound", shown["stats"]["releaseToFirstSoundMs"])
    stages = [record.get(k) for k in ("release_to_first_audio_ms", "stt_ms", "llm_first_token_ms", "persona_ms",
                                      "tts_first_chunk_ms")]
    if all(isinstance(v, int | float) for v in stages):  # what is left after the first chunk: gateway, socket, page
        run.mark("browser: first chunk -> first audio", stages[0] - sum(stages[1:]))
    value = record.get("release_to_first_audio_ms")
    return float(value) if record.get("status") == "ok" and value is not None else None
