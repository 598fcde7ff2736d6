"""A timer ringing in a browser tab: the tab takes the ring's turn (a turn nobody pressed for) and plays it.

First one `Tab` (actors/web_tab.py) on its own, a list for its bus and one for its page, so each case asserts
the exact messages it published; then the real gateway, tools and tts processes over the real WebSocket, the
timer set for the tab's session as the llm would set it (tests/test_timers.py).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.web_settings import WebSettings
from actors.web_tab import Tab
from bus.codec import Envelope
from bus.handshake import prove_path
from bus.messages import AudioChunk, ButtonEvent, CaptureEnd, Message, PlayerEvent, Say, ToolUsed
from bus.sockets import BusClient
from launch.config import bus_address, load_config
from tests.test_timers import call
from tests.test_web_gateway import Gateway, events, leave_nothing, play_reply, records_of, start_gateway

SESSION = "web-0123456789abcdef"
RING = 1_800_000_000_000
"""The ring's turn: newer than any the tab starts in these tests (its ids are the clock's milliseconds)."""
RANG = "Ding ding! Your tea timer is done."


class Bus:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def publish(self, msg: Message, payload: bytes = b"") -> None:
        self.sent.append(msg)

    def taken(self) -> list[tuple[str, int, str]]:
        """What was published since the last look: (kind, turn, state or reason)."""
        sent, self.sent = self.sent, []
        return [(type(m).__name__, m.turn, str(getattr(m, "state", getattr(m, "reason", "")))) for m in sent]


class Page:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, frame: str | bytes) -> None:
        self.events.append(json.loads(frame) if isinstance(frame, str) else {"type": "pcm", "bytes": len(frame)})

    def taken(self) -> list[str]:
        seen, self.events = self.events, []
        return [e["type"] for e in seen if e["type"] != "beat"]


def new_tab() -> tuple[Tab, Bus, Page]:
    bus, page = Bus(), Page()
    return Tab(SESSION, bus, page, WebSettings()), bus, page


def ring(tab: Tab, turn: int = RING) -> None:
    tab.from_bus(Envelope("llm.tool", ToolUsed(session=SESSION, turn=turn, name="timer", by="timers",
                                               arguments={"label": "tea", "seconds": 3}, result="rang")))


def speak_reply(tab: Tab, turn: int, last: bool = True) -> None:
    """The reply of `turn` reaching the tab: its clause and one chunk of audio."""
    tab.from_bus(Envelope("say", Say(session=SESSION, turn=turn, index=0, last=True, text=RANG)))
    tab.from_bus(Envelope("audio.out", AudioChunk(session=SESSION, turn=turn, index=0, sample_rate=16000,
                                                  last=last), b"\x00\x00" * 1600))


def page_says(tab: Tab, **event: Any) -> None:
    tab.from_page_text(json.dumps({"ago_ms": 0, **event}))


def test_a_ring_of_its_session_is_the_turn_the_tab_plays_and_reports() -> None:
    tab, bus, page = new_tab()
    ring(tab)
    assert page.events == [{"type": "ring", "turn": RING, "label": "tea", "missed": False}]
    page.taken()
    speak_reply(tab, RING)
    assert page.taken() == ["say", "chunk", "pcm"]
    page_says(tab, type="started", turn=RING)
    page_says(tab, type="finished", turn=RING, played_ms=100)
    assert bus.taken() == [("PlayerEvent", RING, "started"), ("PlayerEvent", RING, "finished")]
    page_says(tab, type="press", played_ms=0)  # played out: the next press interrupts nothing
    assert bus.taken() == [("ButtonEvent", tab.turn, "")] and tab.turn > RING


def test_a_ring_of_another_session_or_another_tool_is_not_the_tabs() -> None:
    tab, bus, page = new_tab()
    for msg in (ToolUsed(session="web-fedcba9876543210", turn=RING, name="timer", by="timers", result="rang"),
                ToolUsed(session=SESSION, turn=RING, name="set_timer", result="tea timer set for 3 seconds")):
        tab.from_bus(Envelope("llm.tool", msg))
    speak_reply(tab, RING)
    assert page.taken() == [] and bus.taken() == [] and tab.turn == 0


def test_pressing_while_it_rings_cuts_it_off_as_a_barge_in() -> None:
    tab, bus, _page = new_tab()
    ring(tab)
    speak_reply(tab, RING)
    page_says(tab, type="started", turn=RING)
    page_says(tab, type="press", played_ms=40)
    assert bus.taken() == [("PlayerEvent", RING, "started"), ("Interrupt", RING, "barge-in"),
                           ("PlayerEvent", RING, "stopped"), ("ButtonEvent", tab.turn, "")]


def test_a_ring_supersedes_the_tabs_own_reply_as_a_new_turn_does_on_the_player() -> None:
    tab, bus, page = new_tab()
    page_says(tab, type="press")
    page_says(tab, type="release")
    own = tab.turn
    speak_reply(tab, own, last=False)  # its reply is playing, more to come
    bus.taken()
    page.taken()
    ring(tab)
    assert bus.taken() == [("Interrupt", own, "superseded by a timer ringing"), ("PlayerEvent", own, "stopped")]
    speak_reply(tab, own)  # the rest of the cut reply is not played after the ring
    speak_reply(tab, RING)
    assert page.taken() == ["ring", "say", "chunk", "pcm"]


def test_a_ring_while_the_button_is_held_is_shown_stopped_and_the_users_turn_goes_on() -> None:
    tab, bus, page = new_tab()
    page_says(tab, type="press")
    own = tab.turn
    bus.taken()
    ring(tab)
    stopped = bus.sent[-1]
    assert bus.taken() == [("Interrupt", RING, "timer rang while the button was held"),
                           ("PlayerEvent", RING, "stopped")]
    assert isinstance(stopped, PlayerEvent) and stopped.audio_ms == 0 and stopped.clauses_played == 0
    speak_reply(tab, RING)
    assert [e for e in page.events if e["type"] != "turn"] == [
        {"type": "ring", "turn": RING, "label": "tea", "missed": True}]
    page_says(tab, type="release")
    assert tab.turn == own and [type(m) for m in bus.sent] == [ButtonEvent, CaptureEnd]


# --- the real gateway -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ringing_gateway() -> Iterator[Gateway]:
    folder = Path(tempfile.mkdtemp(prefix="rr-webring-"))
    names = ["proxy", "logger", "tools", "tts", "web"]  # a ring needs no question answered
    supervisor, url = start_gateway(folder, names, [f"tools.timers_path={folder}/timers.json"])
    try:
        yield Gateway(url, folder)
    finally:
        supervisor.stop()
        leave_nothing(folder)


def test_a_timer_set_for_a_tab_rings_in_it_with_its_record(ringing_gateway: Gateway) -> None:
    config = load_config(ringing_gateway.folder / "rocky-relay.toml", [])
    client = BusClient(bus_address(config), ("tool.",), name="test")
    try:
        prove_path(client)
        with ringing_gateway.open() as ws:
            session = events(ws, "hello")[0]["session"]
            assert call(client, session, 1, "set_timer", seconds=1, label="tea").ok
            rang = events(ws, "ring")[-1]
            assert (rang["label"], rang["missed"]) == ("tea", False)
            seen = play_reply(ws, rang["turn"])
    finally:
        client.close()
    assert [e["text"] for e in seen if e["type"] == "say"] == [RANG]
    assert {e["turn"] for e in seen if "turn" in e} == {rang["turn"]}
    assert seen[-1]["status"] == "ok" and seen[-1]["spoken_text"] == RANG
    [record] = records_of(ringing_gateway, session, rang["turn"])
    assert record["source"] == "timer" and record["status"] == "ok" and record["first_audio_at"] is not None
