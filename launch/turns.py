"""Driving turns from the outside, as the CLI and the tests do: press, speak, release, wait.

A `TurnDriver` is a bus client that plays the button (or types the words),
follows the turn's messages and returns the logger's record of it.

It waits longer than the logger does (`logger.turn_timeout_s` after the last news of the turn, plus
`RECORD_MARGIN_S`), so a turn the logger ends, a stalled stage included, always comes back as its record;
what comes back otherwise says what was last heard of the turn, never a bare timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors.link import LINK_TIMEOUT_S, LinkWatch
from actors.logger_settings import LoggerSettings
from bus.codec import Envelope
from bus.handshake import prove_path
from bus.messages import AudioFrame, ButtonSource, Heartbeat, Interrupt, PlayerEvent, Transcript, TurnError, TurnRecord
from bus.push_to_talk import ButtonPublisher, new_turn_id
from bus.sockets import BusAddress, BusClient

if TYPE_CHECKING:
    from launch.config import Config

Printer = Callable[[Envelope], None]
HEADLINE = ("release_to_first_audio_ms", "press_to_first_audio_ms")
STAGES = ("capture_ms", "stt_ms", "llm_first_token_ms", "llm_total_ms", "tokens_per_s", "persona_ms",
          "tts_first_chunk_ms", "tts_total_ms", "bus_transit_ms_p50")
RECORD_MARGIN_S = 10.0
"""How much longer than the logger's own deadline a driver waits for a record."""
ERROR_GRACE_S = 5.0
"""After a stage's error for the turn: how long the record may take before the driver reports the error itself."""


def record_wait_s(config: Config) -> float:
    """How long a driver of the set `config` describes waits for a record after the last news of a turn."""
    return float(config.of(LoggerSettings).turn_timeout_s) + RECORD_MARGIN_S


class TurnDriver:
    def __init__(self, address: BusAddress, session: str = "local", source: ButtonSource = "script",
                 wait_s: float = LoggerSettings.turn_timeout_s + RECORD_MARGIN_S,
                 link_timeout_s: float = LINK_TIMEOUT_S) -> None:
        # "say" (a clause at a time) too: news of a long reply, which the wait for its record runs from.
        self.client = BusClient(address, ("stt.final", "llm.done", "say", "turn.", "audio.in", "player",
                                          "ctl.heartbeat"), name="driver")
        self.wait_s = wait_s
        """Seconds without news of a turn before giving up on its record (see `record_wait_s`)."""
        prove_path(self.client)
        self.link_timeout_s = link_timeout_s
        self.link = LinkWatch(link_timeout_s)
        """The server's heartbeats: when they stop, a turn waiting on the server is over."""
        self.button = ButtonPublisher(self.client, session=session, source=source)
        self.session = session

    def close(self) -> None:
        self.client.close()

    def spoken_turn(self, max_speech_s: float = 60.0, timeout_s: float | None = None,
                    on_event: Printer | None = None) -> dict[str, Any]:
        """Hold the button until a finite mic source (WAV) has given all its audio, then release."""
        self._rearm_link()
        turn = self.button.press()
        deadline = time.monotonic() + max_speech_s
        while time.monotonic() < deadline:
            env = self.recv(100)
            if not self.link.up and self.link.last_beat is not None:
                self.button.release()
                return self._link_lost_record(turn)
            if env is None:
                continue
            if on_event:
                on_event(env)
            msg = env.msg
            if (msg.session, msg.turn) != (self.session, turn):  # turn ids are press times: sessions may collide
                continue
            if isinstance(msg, AudioFrame) and msg.source_end:
                break
            if isinstance(msg, TurnRecord):  # the mic refused its source: the turn is over
                self.button.turn_open = False
                return msg.record
        self.button.release()
        return self.wait_record(turn, timeout_s, on_event)

    def _type(self, text: str) -> int:
        """Publish typed words as a new turn's final transcript; the turn's id."""
        turn = new_turn_id(self.button.turn)
        self.button.turn, self.button.turn_open = turn, True
        self.client.publish(Transcript(session=self.session, turn=turn, text=text, source="typed"))
        return turn

    def typed_turn(self, text: str, timeout_s: float | None = None,
                   on_event: Printer | None = None) -> dict[str, Any]:
        return self.wait_record(self._type(text), timeout_s, on_event)

    def interrupted_turn(self, text: str, after_audio_ms: float = 300.0,
                         timeout_s: float | None = None) -> dict[str, Any]:
        """A typed turn cut by a barge-in `after_audio_ms` after Rocky's first audio."""
        timeout_s = self.wait_s if timeout_s is None else timeout_s
        turn = self._type(text)
        deadline = time.monotonic() + timeout_s
        interrupt_at: float | None = None  # wall clock, like the player's `started` stamp
        while time.monotonic() < deadline:
            if interrupt_at is not None and time.time() >= interrupt_at:
                self.client.publish(Interrupt(session=self.session, turn=turn, reason="barge-in"))
                return self.wait_record(turn, timeout_s)
            wait_ms = 200.0 if interrupt_at is None else max(0.0, 1000 * (interrupt_at - time.time()))
            env = self.client.recv(timeout_ms=wait_ms)
            if env is None or (env.msg.session, env.msg.turn) != (self.session, turn):
                continue
            if isinstance(env.msg, PlayerEvent) and env.msg.state == "started":
                interrupt_at = env.msg.ts + after_audio_ms / 1000
            elif isinstance(env.msg, TurnRecord):  # the reply ended before the barge-in was due
                self.button.turn_open = False
                return env.msg.record
        raise TimeoutError(f"turn {turn}: no record after {timeout_s:.0f} s")

    def _rearm_link(self) -> None:
        """Beats the caller read itself since the last turn are not lost beats: count from now, armed
        already when a beat was ever seen (a link cut right after the press must still be noticed)."""
        seen = self.link.last_beat is not None
        self.link = LinkWatch(self.link_timeout_s, last_beat=time.time() if seen else None, up=seen)

    def recv(self, timeout_ms: float) -> Envelope | None:
        """The next message; the server's heartbeats also feed the link watch (read through this, not
        `client.recv`, while a turn waits on the server)."""
        env = self.client.recv(timeout_ms=timeout_ms)
        if env is not None and isinstance(env.msg, Heartbeat) and env.msg.role == "server":
            self.link.beat(time.time())
        self.link.poll(time.time())
        return env

    def _link_lost_record(self, turn: int) -> dict[str, Any]:
        """What this side knows of a turn the server can no longer answer (the server keeps its own record)."""
        self.button.turn_open = False
        return {"session": self.session, "turn": turn, "status": "error", "local_only": True,
                "error": {"stage": "link", "reason": f"no heartbeat from the server for {self.link_timeout_s:g} s "
                          "(network down or server restarting); reconnecting by itself"}}

    def wait_record(self, turn: int, timeout_s: float | None = None,
                    on_event: Printer | None = None) -> dict[str, Any]:
        """The logger's record of `turn`; `timeout_s` (default `wait_s`) counts from the last news of the turn."""
        timeout_s = self.wait_s if timeout_s is None else timeout_s
        self._rearm_link()
        last_news, last_what = time.monotonic(), "nothing heard of it"
        error: TurnError | None = None
        while True:
            env = self.recv(200)
            t = time.monotonic()
            if not self.link.up and self.link.last_beat is not None:
                return self._link_lost_record(turn)
            if error is not None and t - last_news > ERROR_GRACE_S:
                return self._unrecorded_error(error)
            if t - last_news > timeout_s:
                raise TimeoutError(f"turn {turn}: no record from the logger {timeout_s:.0f} s after the last news "
                                   f"of the turn ({last_what}), though the logger ends every turn before that: "
                                   "is it running? see logs/actors/logger.log")
            if env is None:
                continue
            if on_event:
                on_event(env)
            if (env.msg.session, env.msg.turn) != (self.session, turn):
                continue
            if isinstance(env.msg, TurnRecord):
                self.button.turn_open = False
                return env.msg.record
            last_news, last_what = t, f"last heard: {env.topic}"
            if isinstance(env.msg, TurnError) and error is None:
                error = env.msg

    def _unrecorded_error(self, error: TurnError) -> dict[str, Any]:
        """A stage's error for the turn, when the logger wrote no record of it (it never saw the turn begin)."""
        self.button.turn_open = False
        return {"session": self.session, "turn": error.turn, "status": "error", "local_only": True,
                "error": {"stage": error.stage, "reason": f"{error.reason} (the logger wrote no record of this "
                          f"turn within {ERROR_GRACE_S:g} s: see logs/actors/logger.log)"}}


def print_event(env: Envelope, write: Callable[[str], None] = print) -> None:
    """The few messages a person wants to see during a turn."""
    msg = env.msg
    if isinstance(msg, Transcript) and msg.final:
        write(f"you:   {msg.text}")
    elif env.topic == "llm.done":
        write(f"llm:   {getattr(msg, 'text', '')}")
    elif env.topic == "turn.error":
        write(f"error: [{getattr(msg, 'stage', '?')}] {getattr(msg, 'reason', '')}")


def format_record(record: dict[str, Any]) -> str:
    """A short human summary of a turn record."""
    lines = [f"rocky: {record.get('spoken_text') or '(nothing)'}", f"status: {record['status']}"]
    if record.get("error"):
        lines.append(f"error: [{record['error']['stage']}] {record['error']['reason']}")
    for key in (*HEADLINE, *STAGES):
        value = record.get(key)
        if value is not None:
            lines.append(f"  {key:28s} {value:10.1f}")
    exchanges, tokens = record.get("conversation_exchanges"), record.get("conversation_tokens")
    if isinstance(exchanges, int) and isinstance(tokens, int):
        heard = f", heard in {record['language']}" if record.get("language") not in (None, "", "en") else ""
        lines.append(f"conversation: {exchanges} exchange{'s' * (exchanges != 1)} remembered ({tokens} tokens)"
                     f"{heard}")
    return "\n".join(lines)
