"""The live terminal's logic on a real bus, with the test playing the set: prompts follow this client's turn,
a key while Rocky thinks is a barge-in, a turn's lines come before the next prompt, one error line per
failure, other clients' turns hidden unless asked. (tests/test_talk_tmux.py runs it in a real terminal.)"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO, cast

from bus.codec import Envelope
from bus.handshake import prove_path, wait_for_actors
from bus.messages import ButtonEvent, Heartbeat, Interrupt, Ping, PlayerEvent, Ready, Transcript, TurnError, TurnRecord
from bus.sockets import BusAddress, BusClient
from launch.keyboard import KeyReader
from launch.live_talk import LiveTalk, Screen
from launch.turns import TurnDriver

WAIT_S = 10.0


class Output:
    """A non-terminal stdout whose writes wake whoever waits on what has been printed."""

    def __init__(self) -> None:
        self.text = ""
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            self.text += text
            self.changed.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def lines(self) -> list[str]:
        return self.text.splitlines()

    def wait_for(self, ready: Callable[[str], bool], what: str) -> list[str]:
        with self.changed:
            if not self.changed.wait_for(lambda: ready(self.text), timeout=WAIT_S):
                raise AssertionError(f"no {what} in {WAIT_S:g} s; printed:\n{self.text}")
            return self.lines()


@dataclass
class Stage:
    """The test's side of the bus: sees the button and interrupts, plays the set's messages back."""

    client: BusClient

    def next(self, kind: type, match: Callable[[object], bool] = lambda m: True) -> object:
        for _ in range(1000):
            env: Envelope | None = self.client.recv(timeout_ms=WAIT_S * 1000)
            assert env is not None, f"no {kind.__name__} on the bus in {WAIT_S:g} s"
            if isinstance(env.msg, kind) and match(env.msg):
                return env.msg
        raise AssertionError(f"no {kind.__name__} among 1000 messages")

    def record(self, turn: int, status: str = "ok", session: str = "local", **fields: object) -> None:
        self.client.publish(TurnRecord(session=session, turn=turn, record={
            "session": session, "turn": turn, "status": status, "spoken_text": f"reply {turn}", **fields}))


def handshake(stage: Stage, driver: TurnDriver) -> None:
    """What `heard_by` does for the CLI against a real set, with the stage answering as an actor: a driver ping
    that reaches the stage, and the stage's `Ready` that reaches the driver, prove each one's PUB holds the
    other's subscriptions (made earlier on the same pipe), so neither side's first message is dropped."""
    waiter = threading.Thread(target=wait_for_actors, args=(driver.client, {"stage"}), kwargs={"timeout_s": WAIT_S})
    waiter.start()
    while waiter.is_alive():
        env = stage.client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, Ping):
            stage.client.publish(Ready(actor="stage", pid=os.getpid(), nonce=env.msg.nonce))
    waiter.join()


@contextmanager
def live(address: BusAddress, all_sessions: bool = False, wait_s: float = 30.0,
         link_timeout_s: float = 3.5) -> Iterator[tuple[Stage, Output, Callable[[str], None]]]:
    """LiveTalk running in a thread: keys go in as lines through a pipe; yields the stage, what it printed and
    a way to type. Quits (EOF) and joins after."""
    read_fd, write_fd = os.pipe()
    keys_in = os.fdopen(read_fd, "r")
    out = Output()
    stage = Stage(BusClient(address, ("button", "ctl.interrupt"), name="stage"))
    prove_path(stage.client)
    driver = TurnDriver(address, session="local", source="keyboard", wait_s=wait_s, link_timeout_s=link_timeout_s)
    handshake(stage, driver)
    result: list[int] = []

    def run() -> None:
        with KeyReader(keys_in) as keys:
            result.append(LiveTalk(driver, keys, Screen(cast(TextIO, out)), all_sessions=all_sessions).run())

    def type_line(line: str) -> None:
        os.write(write_fd, f"{line}\n".encode())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        out.wait_for(lambda s: "[ready]" in s, "ready prompt")
        yield stage, out, type_line
    finally:
        os.close(write_fd)  # end of input: talk quits
        thread.join(WAIT_S)
        keys_in.close()
        driver.close()
        stage.client.close()
    assert not thread.is_alive() and result == [0], result


def pressed(stage: Stage, down: bool = True) -> ButtonEvent:
    msg = stage.next(ButtonEvent, lambda m: m.pressed is down)  # type: ignore[attr-defined]
    assert isinstance(msg, ButtonEvent)
    return msg


def test_the_prompt_follows_the_turn_and_its_lines_come_before_the_next_prompt(bus_address: BusAddress) -> None:
    with live(bus_address) as (stage, out, type_):
        type_("")  # Enter: talk
        turn = pressed(stage).turn
        out.wait_for(lambda s: "[listening]" in s, "listening prompt")
        type_("")
        pressed(stage, down=False)
        out.wait_for(lambda s: "[thinking]" in s, "thinking prompt")
        stage.client.publish(Transcript(session="local", turn=turn, text="what is a star"))
        stage.client.publish(PlayerEvent(session="local", turn=turn, state="started"))
        out.wait_for(lambda s: "[speaking]" in s, "speaking prompt")
        stage.record(turn)
        lines = out.wait_for(lambda s: s.count("[ready]") == 2, "ready prompt after the record")
    states = [line.split("]")[0] + "]" for line in lines if line.startswith("[")]
    assert states == ["[ready]", "[listening]", "[thinking]", "[speaking]", "[ready]"], lines
    assert lines.index("you:   what is a star") < lines.index(f"rocky: reply {turn}") < lines.index("status: ok") \
        < len(lines) - 1, lines


def test_a_key_while_thinking_is_a_barge_in_and_the_cut_turn_prints_before_listening(bus_address: BusAddress) -> None:
    with live(bus_address) as (stage, out, type_):
        type_("")
        first = pressed(stage).turn
        type_("")
        out.wait_for(lambda s: "[thinking]" in s, "thinking prompt")
        type_("x")  # any key
        interrupt = stage.next(Interrupt)
        assert isinstance(interrupt, Interrupt) and interrupt.turn == first
        second = pressed(stage).turn  # as the button does: the next turn's mic opens at once
        assert second > first
        out.wait_for(lambda s: "[stopping]" in s, "stopping prompt")
        stage.record(first, status="interrupted")
        lines = out.wait_for(lambda s: s.count("[listening]") == 2, "listening prompt after the barge-in")
        type_("q")  # quitting mid-turn stops that turn too, and waits for its record
        assert stage.next(Interrupt, lambda m: m.turn == second).reason == "quit"  # type: ignore[attr-defined]
        stage.record(second, status="interrupted")
        out.wait_for(lambda s: s.count("status: interrupted") == 2, "the quit turn's record")
    assert any(line.startswith("barge-in") for line in lines), lines
    barge = next(i for i, line in enumerate(lines) if line.startswith("barge-in"))
    last_listening = max(i for i, line in enumerate(lines) if line.startswith("[listening]"))
    assert barge < lines.index("status: interrupted") < last_listening, lines


def test_a_timer_ringing_unasked_shows_as_speaking_and_a_key_cuts_it_off(bus_address: BusAddress) -> None:
    with live(bus_address) as (stage, out, type_):
        ring = 1_900_000_000_000  # a turn id the set made (ms since the epoch), newer than any of ours
        stage.client.publish(PlayerEvent(session="kitchen", turn=ring + 1, state="started"))  # not ours
        stage.client.publish(PlayerEvent(session="local", turn=ring, state="started"))
        out.wait_for(lambda s: "[speaking]" in s, "speaking prompt for the ring")
        type_("x")
        interrupt = stage.next(Interrupt)
        assert isinstance(interrupt, Interrupt) and (interrupt.session, interrupt.turn) == ("local", ring)
        after = pressed(stage).turn
        stage.record(ring, status="interrupted")
        lines = out.wait_for(lambda s: "[listening]" in s and "status: interrupted" in s, "the ring's record")
        type_("q")
        stage.next(Interrupt, lambda m: m.turn == after)  # type: ignore[attr-defined]
        stage.record(after, status="interrupted")
        out.wait_for(lambda s: s.count("status: interrupted") == 2, "the quit turn's record")
    assert lines.count("(Rocky speaks unasked: a timer rang)") == 1, lines
    assert after > ring


def test_one_error_line_per_failure_and_only_this_clients_turns(bus_address: BusAddress) -> None:
    with live(bus_address) as (stage, out, type_):
        stage.client.publish(Transcript(session="kitchen", turn=5, text="OTHER SESSION"))
        stage.record(6, session="kitchen")
        stage.record(7)  # another client of the same session
        type_("")
        turn = pressed(stage).turn
        type_("")
        stage.client.publish(TurnError(session="local", turn=turn, stage="stt", reason="no speech heard"))
        stage.record(turn, status="error", error={"stage": "stt", "reason": "no speech heard"})
        lines = out.wait_for(lambda s: s.count("[ready]") == 2, "ready prompt after the failed turn")
    assert [line for line in lines if "no speech heard" in line] == ["error: [stt] no speech heard"], lines
    assert not [line for line in lines if "OTHER SESSION" in line or "reply 6" in line or "reply 7" in line], lines


def test_all_sessions_shows_other_clients_turns_marked_with_their_session(bus_address: BusAddress) -> None:
    with live(bus_address, all_sessions=True) as (stage, out, _type):
        stage.client.publish(Transcript(session="kitchen", turn=5, text="OTHER SESSION"))
        stage.record(5, session="kitchen")
        lines = out.wait_for(lambda s: "reply 5" in s, "the other session's reply")
    assert "[kitchen] you:   OTHER SESSION" in lines and "[kitchen] rocky: reply 5 (ok)" in lines, lines


def test_a_turn_whose_record_never_comes_ends_with_one_line_and_the_ready_prompt(bus_address: BusAddress) -> None:
    with live(bus_address, wait_s=1.0) as (stage, out, type_):
        type_("")
        turn = pressed(stage).turn
        type_("")
        lines = out.wait_for(lambda s: s.count("[ready]") == 2, "ready prompt after the lost turn")
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [f"error: [talk] no record of turn {turn} after 1 s: is the logger running?"], lines
    assert lines.index(errors[0]) == len(lines) - 2, lines  # then the prompt, nothing else


def test_says_printer_shows_its_own_turn_once_and_others_only_when_asked() -> None:
    from types import SimpleNamespace

    from launch.say_cmd import own_turn_events

    driver = SimpleNamespace(session="local", button=SimpleNamespace(turn=42))
    traffic = [Envelope("stt.final", Transcript(session="local", turn=42, text="mine")),
               Envelope("turn.error", TurnError(session="local", turn=42, stage="llm", reason="boom")),
               Envelope("stt.final", Transcript(session="local", turn=41, text="same session, other client")),
               Envelope("stt.final", Transcript(session="kitchen", turn=42, text="other session"))]
    for all_sessions, expected in ((False, ["you:   mine"]),
                                   (True, ["you:   mine", "[local] you:   same session, other client",
                                           "[kitchen] you:   other session"])):
        shown: list[str] = []
        show = own_turn_events(driver, all_sessions, shown.append)
        for env in traffic:
            show(env)
        assert shown == expected  # the error is the record's line to print, once


def test_a_set_that_stops_beating_is_said_once_and_so_is_its_return(bus_address: BusAddress) -> None:
    with live(bus_address, link_timeout_s=0.5) as (stage, out, _type):
        stage.client.publish(Heartbeat(role="server", seq=1))
        out.wait_for(lambda s: "no heartbeat from the set for 0.5 s" in s, "the lost set's line")
        stage.client.publish(Heartbeat(role="server", seq=2))
        lines = out.wait_for(lambda s: "the set answers again" in s, "the set's return")
    assert len([line for line in lines if "no heartbeat" in line]) == 1, lines
