"""The Pi's status light: one RGB LED (or three single LEDs) showing what the assistant is doing.

    idle       green           ready for a press
    listening  blue            button held, the mic is capturing
    thinking   yellow (R+G)    released: transcribing, generating, synthesising
    speaking   cyan (G+B)      the player started the reply
    ringing    magenta (R+B),  a timer rang and its turn is playing (over any state
               flashing        but listening), until its playback ends or is stopped
    error      red             a turn failed or an actor died (for `error_hold_s`),
                               or the link to the server is lost (until it is back)

Three GPIO outputs, one per colour, so the same wiring drives a common-cathode
RGB LED, a common-anode one (`active_low = true`), or three separate LEDs. The
state follows the newest turn of this satellite's session: events of an older
turn (a reply cut by a barge-in reporting `stopped`) never overwrite a newer one.
A ringing timer's turn (actors/tools.py) is a cue over that state, not a turn the
light follows: the user's own turn goes on showing beneath it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from actors.base import Actor
from actors.link import LINK_TIMEOUT_S, LinkWatch
from bus.codec import Envelope
from bus.messages import (
    ActorDown,
    ButtonEvent,
    Heartbeat,
    LlmDone,
    Message,
    PlayerEvent,
    ToolUsed,
    Transcript,
    TurnError,
    TurnRecord,
)
from pi.pins import Pins, open_pins

Colour = tuple[bool, bool, bool]
"""Red, green, blue: on or off."""
COLOURS: dict[str, Colour] = {
    "idle": (False, True, False),
    "listening": (False, False, True),
    "thinking": (True, True, False),
    "speaking": (False, True, True),
    "error": (True, False, False),
    "ringing": (True, False, True),
    "off": (False, False, False),
}
RING_FLASH_S = 0.5
"""A ringing timer flashes: magenta, then dark, this long each."""


@dataclass
class LedSettings:
    backend: str = "gpio"
    """gpio (RPi.GPIO on a Pi) or fake (in-memory pins, to run the edge set off a Pi)."""
    red_pin: int = 23
    """BCM number driving red (GPIO23 is header pin 16)."""
    green_pin: int = 24
    """BCM number driving green (GPIO24 is header pin 18)."""
    blue_pin: int = 25
    """BCM number driving blue (GPIO25 is header pin 22)."""
    active_low: bool = False
    """True for a common-anode RGB LED (its common leg on 3.3 V: a low pin lights it)."""
    error_hold_s: float = 3.0
    """How long a failed turn or a dead actor shows red before the light goes back to idle."""
    session: str = "pi"
    """Whose turns to show; empty shows every session's."""


class LedActor(Actor):
    name: ClassVar[str] = "leds"
    # Not llm.token: one message per token, carried across the LAN, would change nothing shown.
    topics = ("button", "stt.final", "llm.done", "llm.tool", "player", "turn.")
    poll_ms = 100.0
    """Also how late an error's hold may end."""
    # The end of an interrupted turn must still reach the light, or it would stay on "speaking".
    delivered_when_cancelled = (PlayerEvent, TurnRecord, TurnError)

    def __init__(self, settings: LedSettings, pins: Pins | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.settings = settings
        self.pins = pins
        self.clock = clock
        """Seconds, for an error's hold and a ring's flashes (a test passes its own)."""
        self.lock = threading.Lock()
        """`link_lost`/`link_ok` may come from a heartbeat thread; the loop changes state too."""
        self.turn_state = "idle"
        self.turn = 0
        self.error_until = 0.0
        self.link_down = False
        self.rings: deque[int] = deque(maxlen=8)
        """Turns that are timers ringing (their `ToolUsed` came): a cue, not a turn to follow."""
        self.ringing: int | None = None
        """The ring whose playback is under way."""
        self.ring_began = 0.0
        self.shown: tuple[str, Colour] | None = None
        self.link = LinkWatch(LINK_TIMEOUT_S)
        """The server's heartbeats (actors/link.py): red while they stay away."""

    # --- what other code calls -----------------------------------------------------------
    @property
    def state(self) -> str:
        """What the light shows now: idle, listening, thinking, speaking, ringing or error."""
        with self.lock:
            return self._wanted()

    def link_lost(self) -> None:
        """The server cannot be reached: red until `link_ok`."""
        with self.lock:
            self.link_down = True
            self._show()

    def link_ok(self) -> None:
        """The server answers again."""
        with self.lock:
            self.link_down = False
            self._show()

    # --- actor hooks ----------------------------------------------------------------------
    def on_start(self) -> None:
        if self.pins is None:
            self.pins = open_pins(self.settings.backend)
        for pin in self._pins():
            self.pins.setup_output(pin, self.settings.active_low)  # dark until the first state is shown
        with self.lock:
            self._show()

    def backend(self) -> str:
        kind = "RPi.GPIO" if self.settings.backend == "gpio" else self.settings.backend
        red, green, blue = self._pins()
        return f"{kind} RGB BCM {red}/{green}/{blue}"

    def handle(self, env: Envelope) -> None:
        msg = env.msg
        with self.lock:
            if self._ring_news(msg):
                self._show()
                return
            if not self._follows(msg):
                return
            if isinstance(msg, ButtonEvent):
                self.turn_state = "listening" if msg.pressed else "thinking"
                if msg.pressed:
                    self.error_until = 0.0  # pressing again is the answer to an error: show that it listens
            elif isinstance(msg, Transcript | LlmDone):
                if self.turn_state in ("idle", "listening"):  # a typed turn has no button to say so
                    self.turn_state = "thinking"
            elif isinstance(msg, PlayerEvent):
                self.turn_state = "speaking" if msg.state == "started" else "idle"
            elif isinstance(msg, TurnError):
                self.turn_state = "idle"
                self.error_until = self.clock() + self.settings.error_hold_s
            elif isinstance(msg, TurnRecord):
                self.turn_state = "idle"
                if msg.record.get("status") in ("error", "timeout"):  # ended with no TurnError (timed out)
                    self.error_until = max(self.error_until, self.clock() + self.settings.error_hold_s)
            self._show()

    def watch_links(self, timeout_s: float) -> None:
        super().watch_links(timeout_s)
        self.link.timeout_s = timeout_s

    def on_control(self, env: Envelope) -> None:
        if isinstance(env.msg, Heartbeat) and env.msg.role == "server" and self.link.beat(time.time()):
            self.link_ok()
        if isinstance(env.msg, ActorDown):  # any session: a dead actor breaks every satellite's turns
            with self.lock:
                self.error_until = self.clock() + self.settings.error_hold_s
                self._show()

    def on_idle(self) -> None:
        if self.link.poll(time.time()):
            self.link_lost()
        with self.lock:
            self._show()  # ends an error's hold

    def on_stop(self) -> None:
        if self.pins is not None:
            with self.lock:
                self._write(COLOURS["off"])
            self.pins.close()

    # --- internals (called with the lock held) --------------------------------------------
    def _pins(self) -> tuple[int, int, int]:
        return self.settings.red_pin, self.settings.green_pin, self.settings.blue_pin

    def _follows(self, msg: Message) -> bool:
        """True when `msg` is about this session's newest turn (a newer one becomes the current one)."""
        if self.settings.session and msg.session != self.settings.session:
            return False
        if msg.turn < self.turn:
            return False
        self.turn = msg.turn
        return True

    def _ring_news(self, msg: Message) -> bool:
        """Takes a message of a ringing timer's turn (True): it starts or ends the ring's cue, and never becomes
        the turn the light follows, so a press before the ring still shows its release and reply."""
        if self.settings.session and msg.session != self.settings.session:
            return False
        if isinstance(msg, ToolUsed):  # the llm's own tool calls show as thinking already
            if msg.name == "timer" and msg.result == "rang":
                self.rings.append(msg.turn)
            return True
        if msg.turn not in self.rings:
            return False
        if isinstance(msg, PlayerEvent) and msg.state == "started":
            self.ringing, self.ring_began = msg.turn, self.clock()
        elif isinstance(msg, PlayerEvent | TurnRecord | TurnError) and msg.turn == self.ringing:
            self.ringing = None  # played out, stopped, or its turn is over
        if isinstance(msg, TurnError):
            self.error_until = self.clock() + self.settings.error_hold_s
        return True

    def _wanted(self) -> str:
        if self.link_down or self.clock() < self.error_until:
            return "error"
        if self.ringing is not None and self.turn_state != "listening":  # a held button is heard first
            return "ringing"
        return self.turn_state

    def _colour(self, state: str) -> Colour:
        dark = state == "ringing" and int((self.clock() - self.ring_began) / RING_FLASH_S) % 2 == 1
        return COLOURS["off" if dark else state]

    def _show(self) -> None:
        wanted = self._wanted()
        colour = self._colour(wanted)
        if (wanted, colour) != self.shown and self.pins is not None:
            self._write(colour)
            if self.shown is None or self.shown[0] != wanted:  # a flash is no news for the log
                self.log.info("led", state=wanted, turn=self.ringing if wanted == "ringing" else self.turn)
            self.shown = (wanted, colour)

    def _write(self, colour: Colour) -> None:
        assert self.pins is not None
        for pin, on in zip(self._pins(), colour, strict=True):
            self.pins.write(pin, on != self.settings.active_low)
