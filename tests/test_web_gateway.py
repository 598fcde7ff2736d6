"""The browser gateway over its real WebSocket, with every actor its own process on a real bus.

A WebSocket client plays the page here (the protocol of actors/web_page/app.js); tests/test_web_browser.py
drives the real page in Chromium. The server set runs its fast test backends (fixed transcript, echo reply,
tone speech), so these tests are about the gateway: sessions, admission, bad frames, barge-in.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from actors.web_settings import TEXT_PER_S
from audio.wav import load_pcm16_mono
from launch.config import load_config
from launch.supervisor import Supervisor
from tests.helpers import processes_mentioning

SAMPLE = Path(__file__).resolve().parents[1] / "launch" / "samples" / "prompt-1s.wav"
FAST = ["stt.backend=fixed", "stt.fixed_text=hello rocky", "llm.backend=echo", "tts.backend=tone",
        "tts.sample_rate=16000", "web.port=0", "web.max_tabs=4"]


def leave_nothing(folder: Path) -> None:
    """Whatever still runs from the set's folder (a supervisor that failed half way) goes, then the folder."""
    for pid in processes_mentioning(str(folder)):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Gateway:
    url: str
    folder: Path
    ssl: ssl.SSLContext | None = None

    @contextmanager
    def open(self, hello: dict[str, Any] | None = None, origin: str | None = None) -> Iterator[ClientConnection]:
        """A socket as a page opens it, its hello sent."""
        with connect(self.url.replace("http", "ws", 1) + "ws", ssl=self.ssl, origin=origin,  # type: ignore[arg-type]
                     proxy=None) as ws:
            ws.send(json.dumps(hello if hello is not None else {"type": "hello"}))
            yield ws


def start_gateway(folder: Path, names: list[str], extra: list[str]) -> tuple[Supervisor, str]:
    (folder / "rocky-relay.toml").write_text(f'[bus]\npub = "ipc://{folder}/pub"\nsub = "ipc://{folder}/sub"\n')
    config = load_config(folder / "rocky-relay.toml", [*FAST, f"logger.path={folder}/turns.jsonl",
                                                       f"web.state_dir={folder}/web", *extra])
    supervisor = Supervisor(config, names, log_dir=folder / "actors")
    try:
        readies = supervisor.start(timeout_s=90)
    except BaseException:
        supervisor.stop()
        raise
    return supervisor, readies["web"].backend


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    folder = Path(tempfile.mkdtemp(prefix="rr-web-"))
    names = ["proxy", "logger", "vad", "stt", "llm", "persona", "tts", "web"]
    supervisor, url = start_gateway(folder, names, [])
    try:
        yield Gateway(url, folder)
    finally:
        supervisor.stop()
        leave_nothing(folder)


@pytest.fixture(scope="module")
def secure_gateway() -> Iterator[Gateway]:
    folder = Path(tempfile.mkdtemp(prefix="rr-webs-"))
    supervisor, url = start_gateway(folder, ["proxy", "logger", "web"], ["web.https=true"])
    try:
        context = ssl.create_default_context(cafile=str(folder / "web" / "web-cert.pem"))
        yield Gateway(url, folder, context)
    finally:
        supervisor.stop()
        leave_nothing(folder)


def events(ws: ClientConnection, until: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Text events (beats answered, as a page does) up to the first of type `until`; binary frames are kept
    as {"type": "pcm", "bytes": n}."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = ws.recv(timeout=timeout_s)
        event = {"type": "pcm", "bytes": len(frame)} if isinstance(frame, bytes) else json.loads(frame)
        if event["type"] == "beat":
            ws.send(json.dumps({"type": "beat", "seq": event["seq"]}))
            continue
        seen.append(event)
        if event["type"] == until:
            return seen


def speak(ws: ClientConnection) -> int:
    """Press, 0.9 s of speech, release (as fast as allowed: within the gateway's real-time slack); the turn."""
    ws.send(json.dumps({"type": "press", "ago_ms": 0}))
    turn = int(events(ws, "turn")[-1]["turn"])
    pcm = load_pcm16_mono(SAMPLE).tobytes()[:28800]
    for start in range(0, len(pcm), 1280):
        ws.send(pcm[start:start + 1280])
    ws.send(json.dumps({"type": "release", "ago_ms": 0}))
    return turn


def play_reply(ws: ClientConnection, turn: int) -> list[dict[str, Any]]:
    """What the page hears of the turn until its last chunk; then it says it played it all."""
    seen = events(ws, "chunk")
    ws.send(json.dumps({"type": "started", "turn": turn, "ago_ms": 0}))
    while not (seen[-1]["type"] == "chunk" and seen[-1]["last"]):
        seen += events(ws, "chunk")
    ws.send(json.dumps({"type": "finished", "turn": turn, "ago_ms": 0, "played_ms": 100}))
    return seen + events(ws, "record")


def test_a_tab_is_its_own_session_and_gets_its_turn_spoken_and_recorded(gateway: Gateway) -> None:
    with gateway.open() as ws:
        session = events(ws, "hello")[0]["session"]
        assert session.startswith("web-") and len(session) == 20
        turn = speak(ws)
        seen = play_reply(ws, turn)
    kinds = [e["type"] for e in seen]
    assert {"transcript", "say", "chunk", "pcm", "record"} <= set(kinds)
    assert all(e.get("turn", turn) == turn for e in seen)
    assert [e["text"] for e in seen if e["type"] == "transcript" and e["final"]] == ["hello rocky"]
    record = seen[-1]
    assert record["status"] == "ok" and record["text_in"] == "hello rocky", record
    assert record["release_to_first_audio_ms"] is not None and record["press_to_first_audio_ms"] is not None
    written = [json.loads(line) for line in (gateway.folder / "turns.jsonl").read_text().splitlines()]
    assert any(r["session"] == session and r["turn"] == turn and r["status"] == "ok" for r in written)


def test_two_tabs_at_once_hear_only_their_own_turns(gateway: Gateway) -> None:
    with gateway.open() as first, gateway.open() as second, gateway.open() as idle:
        sessions = [events(ws, "hello")[0]["session"] for ws in (first, second, idle)]
        assert len(set(sessions)) == 3
        turns = [speak(first), speak(second)]
        heard = [play_reply(first, turns[0]), play_reply(second, turns[1])]
        idle.send(json.dumps({"type": "press", "ago_ms": 0}))  # a barrier: everything before it was read
        idle_saw = events(idle, "turn")
    assert turns[0] != turns[1]
    for mine, turn in zip(heard, turns, strict=True):
        assert {e["turn"] for e in mine if "turn" in e} == {turn}
        assert mine[-1]["status"] == "ok"
    assert [e["type"] for e in idle_saw] == ["turn"], "a tab that did not talk heard someone else's turn"


def test_pressing_again_interrupts_the_reply_and_its_record_says_so(gateway: Gateway) -> None:
    with gateway.open() as ws:
        events(ws, "hello")
        first = speak(ws)
        events(ws, "chunk")
        ws.send(json.dumps({"type": "started", "turn": first, "ago_ms": 0}))
        ws.send(json.dumps({"type": "press", "ago_ms": 0, "played_ms": 40}))
        seen = events(ws, "record")
        while seen[-1]["turn"] != first:
            seen += events(ws, "record")
        ws.send(json.dumps({"type": "release", "ago_ms": 0}))
    record = seen[-1]
    assert record["status"] == "interrupted" and record["interrupt_to_silence_ms"] is not None, record
    assert any(e["type"] == "turn" and e["turn"] > first for e in seen)


def test_bad_frames_are_dropped_with_a_reason_and_the_tab_goes_on(gateway: Gateway) -> None:
    with gateway.open() as ws:
        session = events(ws, "hello")[0]["session"]
        for bad in ("not json", "[1, 2]", '{"type": "launch"}', '{"type": "press", "ago_ms": "soon"}',
                    '{"type": "release"}', '{"type": "started", "turn": 1}', '{"type": "beat", "seq": -1}',
                    "[" * 20_000):
            ws.send(bad)
        ws.send(b"\x01\x02")  # audio while the button is up
        ws.send(json.dumps({"type": "press", "ago_ms": 0}))
        events(ws, "turn")
        ws.send(b"\x01\x02\x03")  # an odd byte count
        ws.send(json.dumps({"type": "release", "ago_ms": 0}))
        turn = speak(ws)
        assert play_reply(ws, turn)[-1]["status"] == "ok"
    log = wait_for_log(gateway, '"bad_frames_dropped"')  # past the first five, a burst is counted (on close)
    assert log.count('"bad_frame_dropped"') == 5 and session in log
    for reason in ("Expecting value", "must be a JSON object", "unknown type 'launch'", "ago_ms must be a number",
                   "release without a press"):
        assert reason in log, reason
    summary = json.loads(next(line for line in log.splitlines() if '"bad_frames_dropped"' in line))
    assert (summary["count"], summary["total"]) == (5, 10) and summary["client"] == f"web {session}", summary


def wait_for_log(gateway: Gateway, text: str, timeout_s: float = 10.0) -> str:
    """The gateway's log once it holds `text` (polled with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while text not in (log := (gateway.folder / "actors" / "web.log").read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a file with a deadline, not a bare wait
    return log


def records_of(gateway: Gateway, session: str, turn: int = 0, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The session's records (of `turn` only, when given) in the logger's file, once there is one (polled
    with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        path = gateway.folder / "turns.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        found = [r for r in map(json.loads, lines) if r["session"] == session and turn in (0, r["turn"])]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)  # polling a file with a deadline, not a bare wait


def test_a_closed_tab_ends_its_turn_at_once(gateway: Gateway) -> None:
    with gateway.open() as ws:
        session = events(ws, "hello")[0]["session"]
        turn = speak(ws)
        events(ws, "transcript")
    began = time.monotonic()
    mine = records_of(gateway, session)
    assert [(r["turn"], r["status"]) for r in mine] in ([(turn, "interrupted")], [(turn, "ok")]), mine
    assert time.monotonic() - began < 15, "the record waited for the logger's timeout"


def test_the_page_is_served_with_a_strict_policy_and_nothing_else_is(gateway: Gateway) -> None:
    with urllib.request.urlopen(gateway.url, timeout=10) as page:
        assert "hold to talk" in page.read().decode()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for path in ("app.js", "capture.js", "style.css"):
        with urllib.request.urlopen(gateway.url + path, timeout=10) as asset:
            assert asset.status == 200
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(gateway.url + "../actors/web_tab.py", timeout=10)
    assert missing.value.code == 404


def test_a_page_of_another_origin_may_not_open_a_socket(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as refused, gateway.open(origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403


def test_a_secure_gateway_refuses_a_socket_without_the_right_token(secure_gateway: Gateway) -> None:
    state = secure_gateway.folder / "web"
    token = (state / "pairing-token").read_text().strip()
    assert {p.name: p.stat().st_mode & 0o777 for p in state.iterdir()} == {
        "pairing-token": 0o600, "web-cert.pem": 0o600, "web-key.pem": 0o600}
    assert secure_gateway.url.startswith("https://")
    for hello in ({"type": "hello"}, {"type": "hello", "token": "guess"}, {"type": "hello", "token": 7}):
        with secure_gateway.open(hello) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.send(json.dumps({"type": "press", "ago_ms": 0}))
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with secure_gateway.open({"type": "hello", "token": token}) as ws:
        assert events(ws, "hello")[0]["session"].startswith("web-")
    logs = "".join(p.read_text() for p in (secure_gateway.folder / "actors").glob("*.log"))
    assert "pairing token missing or wrong" in logs and token not in logs


def test_tabs_past_the_limit_are_refused_and_a_silent_one_is_closed(gateway: Gateway) -> None:
    with gateway.open() as silent, gateway.open() as b, gateway.open() as c, gateway.open() as d:
        for ws in (b, c, d):
            events(ws, "hello")
        with pytest.raises(ConnectionClosed) as refused, gateway.open() as fifth:  # closed at once, hello or not
            fifth.recv(timeout=10)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 4429
        with pytest.raises(ConnectionClosed) as dropped:  # it never answers a beat: gone after the link timeout
            while True:
                silent.recv(timeout=15)
        assert dropped.value.rcvd is not None and dropped.value.rcvd.code == 4408


def test_a_flooding_tab_is_held_to_its_budget_and_stays_connected(gateway: Gateway) -> None:
    with gateway.open() as ws:
        session = events(ws, "hello")[0]["session"]
        began = time.monotonic()
        for _ in range(300):
            ws.send(json.dumps({"type": "beat", "seq": 1}))
            ws.send(b"\x00\x00")
        frame = ws.recv(timeout=10)  # the next beat still comes: the tab was not closed
        took_s = time.monotonic() - began
        assert json.loads(frame)["type"] == "beat"
    wait_for_log(gateway, f'"web {session}", "count"')  # the burst's summary, written when the tab closed
    log = (gateway.folder / "actors" / "web.log").read_text()
    mine = [json.loads(line) for line in log.splitlines() if f'"web {session}"' in line]
    one_by_one = [line for line in mine if line.get("event") == "bad_frame_dropped"]
    summaries = [line for line in mine if line.get("event") == "bad_frames_dropped"]
    text_dropped = (sum(1 for line in one_by_one if line["topic"] == "page.text")
                    + sum(line["topics"].get("page.text", 0) for line in summaries))
    # 300 audio frames (the button is up, or past the budget) and the text frames past the budget: a burst of
    # twice the rate, then the rate for as long as the sending took (longer on a loaded machine)
    assert summaries[-1]["total"] >= 500, summaries
    assert text_dropped >= 300 - 2 * TEXT_PER_S - TEXT_PER_S * took_s - 1, (text_dropped, took_s, summaries)


def test_pressing_again_before_any_reply_audio_ends_that_turn(gateway: Gateway) -> None:
    with gateway.open() as ws:
        session = events(ws, "hello")[0]["session"]
        first = speak(ws)
        ws.send(json.dumps({"type": "press", "ago_ms": 0, "played_ms": 0}))  # thinking: nothing played yet
        ws.send(json.dumps({"type": "release", "ago_ms": 0}))
        ended = records_of(gateway, session, first)
    assert [r["status"] for r in ended] == ["interrupted"] and ended[0]["played_at_stop_ms"] == 0, ended


def test_a_gateway_without_a_token_answers_only_to_loopback_names(gateway: Gateway) -> None:
    """A site whose name was pointed at 127.0.0.1 (DNS rebinding) would be the page's own origin."""
    port = gateway.url.rsplit(":", 1)[1].strip("/")
    for host in (f"rebound.example:{port}", "", f"127.0.0.1.example:{port}"):
        request = urllib.request.Request(gateway.url, headers={"Host": host})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        with urllib.request.urlopen(urllib.request.Request(gateway.url, headers={"Host": host}), timeout=10) as ok:
            assert ok.status == 200
    assert "is not this machine's loopback name" in wait_for_log(gateway, "web_request_refused")


def test_the_web_command_starts_the_server_set_and_the_page_and_stops_on_ctrl_c(set_dir: Path) -> None:
    with socket.socket() as probe:  # a free port for the page (the command prints the configured one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (set_dir / "rocky-relay.toml").write_text(f'[bus]\npub = "ipc://{set_dir}/pub"\nsub = "ipc://{set_dir}/sub"\n')
    settings = [*(s for s in FAST if not s.startswith("web.")), f"web.port={port}", f"web.state_dir={set_dir}/web",
                f"logger.path={set_dir}/t.jsonl"]
    command = [sys.executable, "-m", "launch.cli", "--config", str(set_dir / "rocky-relay.toml"),
               *[a for s in settings for a in ("--set", s)], "web"]
    web = subprocess.Popen(command, cwd=set_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert web.stderr is not None and web.stdout is not None
        lines = []
        for line in web.stderr:
            lines.append(line)
            if "ready on" in line:
                break
        assert any("web      ready  http://127.0.0.1" in line for line in lines), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200
        web.send_signal(signal.SIGINT)
        assert web.wait(timeout=60) == 0
        assert f"open http://127.0.0.1:{port}/" in web.stdout.read()
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()
