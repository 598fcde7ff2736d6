"""The Pi's push-to-talk button: a GPIO switch, debounced, true hold-to-talk.

Press publishes `ButtonEvent(pressed=True, source="gpio")`, release publishes
`pressed=False`; a press while the previous turn is still open (from its press
until its record, error, or the end of its playback) publishes `Interrupt` for
it first, which is a barge-in. All of that is `ButtonPublisher`'s job, shared
with the keyboard button; this module adds the pin, the debouncing and the
bookkeeping of when a turn is over.

A watcher thread polls the pin (RPi.GPIO's edge detection is broken on current
Raspberry Pi OS kernels, see pi/pins.py) and publishes from its own bus
socket, since sockets are not thread-safe; the actor's loop only listens for
the messages that close a turn.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import ClassVar

from actors.base import Actor, on
from bus.handshake import prove_path
from bus.messages import Interrupt, PlayerEvent, TurnError, TurnRecord
from bus.push_to_talk import ButtonPublisher
from bus.sockets import BusAddress, BusClient
from pi.pins import Pins, open_pins


@dataclass
class GpioButtonSettings:
    backend: str = "gpio"
    """gpio (RPi.GPIO on a Pi) or fake (in-memory pins, to run the edge set off a Pi)."""
    pin: int = 17
    """BCM number of the button's pin (GPIO17 is header pin 11)."""
    active_low: bool = True
    """True: the switch connects the pin to GND and the internal pull-up holds it high when open."""
    debounce_ms: float = 30.0
    """After an accepted edge, level changes are ignored for this long (contact bounce)."""
    poll_ms: float = 5.0
    """How often the pin is read: at most this much is added to press and release times."""
    session: str = "pi"
    """Satellite id put on every turn this button starts."""


class Debouncer:
    """Leading-edge debounce: the first change is taken at once, then changes are ignored for
    `lockout_s`. Waiting for the level to settle instead would delay every release by the
    whole window, and the release starts `release_to_first_audio_ms`. After the lockout the
    level is simply read again, so a press shorter than the window still ends in a release."""

    def __init__(self, lockout_s: float, level: bool) -> None:
        self.lockout_s = lockout_s
        self.level = level
        self.locked_until = float("-inf")

    def update(self, level: bool, now: float) -> bool | None:
        """The new level when `level` at `now` is an accepted edge, else None."""
        if now < self.locked_until or level == self.level:
            return None
        self.level = level
        self.locked_until = now + self.lockout_s
        return level


class GpioButtonActor(Actor):
    name: ClassVar[str] = "button"
    poll_ms = 200.0
    # A turn interrupted by someone else still has to close here, or the next press would interrupt it again.
    delivered_when_cancelled = (TurnRecord, TurnError, PlayerEvent)

    def __init__(self, settings: GpioButtonSettings, pins: Pins | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.pins = pins
        self.address: BusAddress | None = None
        self.lock = threading.Lock()
        """Guards `button` (its turn and turn_open), shared by the watcher and the actor loop."""
        self.button: ButtonPublisher | None = None
        self.held = False
        """A press was published and its release not yet."""
        self.stop_watching = threading.Event()
        self.watcher: threading.Thread | None = None
        self.watcher_ready = threading.Event()
        self.watcher_error = ""

    def run(self, address: BusAddress) -> None:
        self.address = address
        super().run(address)

    @property
    def turn_open(self) -> bool:
        with self.lock:
            return self.button is not None and self.button.turn_open

    def on_start(self) -> None:
        if self.pins is None:
            self.pins = open_pins(self.settings.backend)
        self.pins.setup_input(self.settings.pin, pull_up=self.settings.active_low)
        self.watcher = threading.Thread(target=self._watch, name="button-gpio", daemon=True)
        self.watcher.start()
        if not self.watcher_ready.wait(15) or self.watcher_error:
            raise RuntimeError(f"button publisher could not reach the bus: {self.watcher_error or 'timeout'}")

    def backend(self) -> str:
        kind = "RPi.GPIO" if self.settings.backend == "gpio" else self.settings.backend
        return f"{kind} BCM {self.settings.pin}"

    @on(TurnRecord, TurnError)
    def _turn_over(self, msg: TurnRecord | TurnError, _payload: bytes) -> None:
        self._close(msg.session, msg.turn)

    @on(PlayerEvent)
    def _player(self, msg: PlayerEvent, _payload: bytes) -> None:
        if msg.state == "started":
            self._adopt(msg.session, msg.turn)
        elif msg.state in ("finished", "stopped"):
            # A played-out reply has nothing left to barge into: an Interrupt after it would only
            # make the LLM forget a reply the user heard.
            self._close(msg.session, msg.turn)

    def on_interrupt(self, msg: Interrupt) -> None:
        self._close(msg.session, msg.turn)

    def on_stop(self) -> None:
        self.stop_watching.set()
        if self.watcher is not None:
            self.watcher.join(timeout=2)
        if self.pins is not None:
            self.pins.close()

    # --- the watcher thread ---------------------------------------------------------------
    def _close(self, session: str, turn: int) -> None:
        with self.lock:
            if self.button is not None and (session, turn) == (self.button.session, self.button.turn):
                self.button.turn_open = False

    def _adopt(self, session: str, turn: int) -> None:
        """Audio of a turn this button did not start (a timer ringing) began playing here: a press cuts it off.
        Only a newer turn, while the button is up: a press held now has started the user's own."""
        with self.lock:
            if (self.button is not None and session == self.button.session and turn > self.button.turn
                    and not self.held):
                self.button.adopt(turn)

    def _pressed(self) -> bool:
        assert self.pins is not None
        return self.pins.read(self.settings.pin) != self.settings.active_low

    def _watch(self) -> None:
        assert self.address is not None
        client = BusClient(self.address, name="button-gpio")
        try:
            prove_path(client)
        except TimeoutError as exc:
            self.watcher_error = str(exc)
            client.close()
            self.watcher_ready.set()
            return
        try:
            with self.lock:
                self.button = ButtonPublisher(client, session=self.settings.session, source="gpio")
            # Whatever the button does at start-up is its resting state: a switch stuck down at boot
            # must not open a turn, and its release must not close one that never began.
            debouncer = Debouncer(self.settings.debounce_ms / 1000, self._pressed())
            self.watcher_ready.set()
            while not self.stop_watching.wait(self.settings.poll_ms / 1000):
                self._step(debouncer)
            if self.held:  # stopping mid-turn: let the mic close its capture
                self._release()
        except Exception as exc:
            self.watcher_error = f"{type(exc).__name__}: {exc}"
            self.log.exception("button_watcher_failed")
            self.stopping = True  # a button that cannot be read must not look alive; the supervisor restarts it
            self.watcher_ready.set()
        finally:
            client.close()

    def _step(self, debouncer: Debouncer) -> None:
        edge = debouncer.update(self._pressed(), time.monotonic())
        if edge is True:
            with self.lock:
                assert self.button is not None
                barge_in = self.button.turn_open
                turn = self.button.press()
            self.held = True
            self.log.info("pressed", turn=turn, barge_in=barge_in)
        elif edge is False and self.held:
            self._release()

    def _release(self) -> None:
        with self.lock:
            assert self.button is not None
            self.button.release()
            turn = self.button.turn
        self.held = False
        self.log.info("released", turn=turn)
