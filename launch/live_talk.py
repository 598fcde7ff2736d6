"""The live terminal of `rocky-relay talk`: a prompt that tells the truth, single keys, barge-in.

One loop reads both the keys and the bus, so nothing prints behind its back. The prompt shows the state of
this client's own turn as the bus tells it (ready, listening, thinking, speaking); a turn's lines (what was
heard, the reply, its record or its one error line) always come before the next prompt; a key while Rocky
thinks or speaks is a barge-in (the interrupt the button sends, then a new turn), shown as one. Other
clients' turns are not shown unless asked (`--all-sessions`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from bus.codec import Envelope
from bus.messages import Interrupt, PlayerEvent, Transcript, TurnError, TurnRecord
from launch.keyboard import QUIT_KEYS, TALK_KEYS, KeyReader
from launch.turns import ERROR_GRACE_S, TurnDriver, format_record, print_event

State = Literal["ready", "listening", "thinking", "speaking", "stopping"]
POLL_S = 0.05
"""How long one pass of the loop waits for a key before it reads the bus again."""
STOP_WAIT_S = 5.0
"""After a barge-in or a quit: how long the interrupted turn's record may take (the player answers an
interrupt at once) before the next prompt comes without it."""
ExtraKey = tuple[str, Callable[["LiveTalk"], None]]
"""(what it does, for the prompt; the action) of a key that works while ready."""


class Screen:
    """Lines of output above one state line; on a terminal the state line is rewritten in place."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.state_text = ""

    def line(self, text: str) -> None:
        if self.live and self.state_text:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        if self.live and self.state_text:
            self.out.write(self.state_text)
        self.out.flush()

    def state(self, text: str) -> None:
        self.state_text = text
        self.out.write(f"\r\x1b[K{text}" if self.live else f"{text}\n")
        self.out.flush()

    def close(self) -> None:
        if self.live and self.state_text:
            self.out.write("\n")
            self.out.flush()


@dataclass
class Due:
    """A turn of this client whose record has not come yet."""

    turn: int
    last_news: float
    error: TurnError | None = None


class LiveTalk:
    def __init__(self, driver: TurnDriver, keys: KeyReader, screen: Screen, all_sessions: bool = False,
                 extra_keys: dict[str, ExtraKey] | None = None) -> None:
        self.driver = driver
        self.keys = keys
        self.screen = screen
        self.all_sessions = all_sessions
        self.extra_keys = extra_keys or {}
        self.state: State = "ready"
        self.due: Due | None = None
        """The released (or interrupted) turn whose record is awaited."""
        self.link_lost_said = False
        """The set's heartbeats stopped and this terminal said so (once, until they come back)."""

    # --- the prompt ----------------------------------------------------------------
    def prompt(self, state: State) -> str:
        talk, any_key, quit_ = ("space/Enter", "any key", "q") if self.keys.single_keys else \
            ("Enter", "Enter", "q+Enter")
        extras = "".join(f"  {key}: {what}" for key, (what, _) in self.extra_keys.items())
        return {"ready": f"[ready] {talk}: talk{extras}  {quit_}: quit",
                "listening": f"[listening] {talk}: send",
                "thinking": f"[thinking] {any_key}: barge in  {quit_}: quit",
                "speaking": f"[speaking] {any_key}: barge in  {quit_}: quit",
                "stopping": "[stopping] waiting for Rocky to stop"}[state]

    def show(self, state: State) -> None:
        self.state = state
        self.screen.state(self.prompt(state))

    # --- the loop ------------------------------------------------------------------
    def run(self) -> int:
        self.show("ready")
        try:
            while True:
                self.drain()
                keys = self.keys.read(POLL_S)
                if keys is None or any(key in QUIT_KEYS for key in keys):
                    self.quit()
                    return 0
                for key in keys:
                    self.key(key)
        finally:
            self.screen.close()

    def key(self, key: str) -> None:
        button = self.driver.button
        if self.state == "ready":
            if key in TALK_KEYS:
                button.press()
                self.show("listening")
            elif key in self.extra_keys:
                self.extra_keys[key][1](self)
        elif self.state == "listening":
            if key in TALK_KEYS:
                button.release()
                self.due = Due(button.turn, time.monotonic())
                self.show("thinking")
        elif self.state in ("thinking", "speaking"):
            self.barge_in()

    def barge_in(self) -> None:
        """As the button does: interrupt the turn, start the next; the interrupted one's lines come first."""
        self.screen.line("barge-in: Rocky stops, and listens")
        self.driver.button.press()  # publishes the interrupt for the turn, then opens the mic for the next
        self.wait_for_due()
        self.show("listening")

    def quit(self) -> None:
        """Stop this client's turn in flight (if any) and let its record print before the shell's prompt."""
        button = self.driver.button
        if self.state == "listening":
            button.release()
            self.due = Due(button.turn, time.monotonic())
        if self.due is not None:
            self.driver.client.publish(Interrupt(session=self.driver.session, turn=self.due.turn, reason="quit"))
            self.wait_for_due()

    def wait_for_due(self) -> None:
        self.show("stopping")
        deadline = time.monotonic() + STOP_WAIT_S
        while self.due is not None and time.monotonic() < deadline:
            self.drain(wait_ms=POLL_S * 1000)
        if self.due is not None:
            self.screen.line(f"(turn {self.due.turn}: no record yet; the logger writes it to its turns file)")
            self.due = None

    # --- the bus -------------------------------------------------------------------
    def drain(self, wait_ms: float = 0.0) -> None:
        """Handle every message waiting, then what the clock says about the turn due."""
        env = self.driver.recv(wait_ms)
        while env is not None:
            self.on_message(env)
            env = self.driver.recv(0)
        self.check_due()
        self.check_link()

    def on_message(self, env: Envelope) -> None:
        msg = env.msg
        if msg.turn == 0:  # beats, pings: no turn's
            return
        if isinstance(msg, PlayerEvent) and msg.state == "started" and self._unasked(msg):
            self.adopt(msg.turn)
        due = self.due.turn if self.due else None
        if msg.session != self.driver.session or msg.turn not in (due, self.driver.button.turn):
            if self.all_sessions:
                self.other(env)
            return
        if self.due is not None and msg.turn == due:
            self.due.last_news = time.monotonic()
        if isinstance(msg, TurnRecord):
            self.finish(msg.record)
        elif isinstance(msg, TurnError):
            if self.due is not None and msg.turn == due:
                self.due.error = self.due.error or msg  # its record says it: one line per failure
        elif isinstance(msg, PlayerEvent):
            if msg.state == "started" and msg.turn == due and self.state == "thinking":
                self.show("speaking")
        elif isinstance(msg, Transcript) or env.topic == "llm.done":
            print_event(env, self.screen.line)

    def _unasked(self, msg: PlayerEvent) -> bool:
        """Audio of a turn the set started on this session by itself (a timer ringing), while this client waits."""
        return (msg.session == self.driver.session and self.state == "ready" and self.due is None
                and msg.turn > self.driver.button.turn)

    def adopt(self, turn: int) -> None:
        """Rocky speaks unasked: shown as speaking, and a key cuts it off as it cuts off a reply."""
        self.driver.button.adopt(turn)
        self.due = Due(turn, time.monotonic())
        self.screen.line("(Rocky speaks unasked: a timer rang)")
        self.show("speaking")

    def other(self, env: Envelope) -> None:
        """Another client's turn, with --all-sessions: its words and its outcome, marked with its session."""
        msg = env.msg
        if isinstance(msg, TurnRecord):
            record = msg.record
            self.screen.line(f"[{msg.session}] rocky: {record.get('spoken_text') or '(nothing)'} "
                             f"({record.get('status')})")
        elif isinstance(msg, Transcript) and msg.final:
            self.screen.line(f"[{msg.session}] you:   {msg.text}")

    def finish(self, record: dict[str, Any]) -> None:
        """A record of this client's: print it; the turn it closes is over (a listening turn's, too: the mic
        refused it)."""
        button = self.driver.button
        listening_ended = self.state == "listening" and record.get("turn") == button.turn
        if not listening_ended and (self.due is None or record.get("turn") != self.due.turn):
            return
        self.screen.line(format_record(record))
        if record.get("turn") == button.turn:
            button.turn_open = False
        if not listening_ended:
            self.due = None
        if listening_ended or self.state in ("thinking", "speaking"):
            self.show("ready")

    def check_due(self) -> None:
        """A turn whose record does not come still ends, with one line that says why."""
        due = self.due
        if due is None or self.state == "stopping":
            return
        quiet_s = time.monotonic() - due.last_news
        link = self.driver.link
        if not link.up and link.last_beat is not None:
            reason = (f"[link] no heartbeat from the set for {self.driver.link_timeout_s:g} s "
                      "(stopped, or the network is down)")
            self.link_lost_said = True
        elif due.error is not None and quiet_s > ERROR_GRACE_S:
            reason = f"[{due.error.stage}] {due.error.reason} (no record of this turn: see logs/actors/logger.log)"
        elif quiet_s > self.driver.wait_s:
            reason = f"[talk] no record of turn {due.turn} after {self.driver.wait_s:g} s: is the logger running?"
        else:
            return
        self.screen.line(f"error: {reason}")
        self.driver.button.turn_open = False
        self.due = None
        self.show("ready")

    def check_link(self) -> None:
        """A set that stopped beating (serve stopped, the network down) is said once, and so is its return: a
        `[ready]` prompt alone would claim a set that is not there."""
        link = self.driver.link
        lost = link.last_beat is not None and not link.up
        if lost and not self.link_lost_said:
            self.link_lost_said = True
            self.screen.line(f"error: [link] no heartbeat from the set for {self.driver.link_timeout_s:g} s: stopped? "
                             "(`rocky-relay serve` starts one; this terminal reconnects by itself)")
        elif not lost and self.link_lost_said:
            self.link_lost_said = False
            self.screen.line("the set answers again")
