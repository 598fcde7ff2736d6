"""GPIO pins behind one small protocol: RPi.GPIO on a Pi, `FakePins` everywhere else.

Pin numbers are BCM (the `GPIOnn` names), never physical header positions.
RPi.GPIO is imported only when the real backend is asked for, so the edge
actors import, run and test on any machine; asking for it where it is missing
raises `PinsUnavailable`, which names what to install.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

INSTALL_HINT = ("install RPi.GPIO on the Pi: pip install RPi.GPIO, or the project's pi extra: "
                "pip install '.[pi]' (pi/install.sh does this)")


class PinsUnavailable(RuntimeError):
    """The real GPIO backend cannot be used here; the message says what to install or fix."""


class Pins(Protocol):
    """Digital pins by BCM number. Levels are electrical: True is high (3.3 V)."""

    def setup_input(self, pin: int, pull_up: bool) -> None:
        """Make `pin` an input with the internal pull-up (True) or pull-down (False)."""

    def setup_output(self, pin: int, level: bool) -> None:
        """Make `pin` an output, driven to `level` at once."""

    def read(self, pin: int) -> bool:
        """The input's level now."""

    def write(self, pin: int, level: bool) -> None:
        """Drive an output high (True) or low."""

    def close(self) -> None:
        """Release the pins this object set up (back to inputs), and only those."""


class RpiPins:
    """RPi.GPIO in BCM mode. Only input/output/setup are used: its edge detection fails on
    Raspberry Pi OS kernels from 6.6 on ("Failed to add edge detection", raspberrypi/linux#6037),
    while plain reads keep working, so the button polls."""

    def __init__(self) -> None:
        try:
            from RPi import GPIO
        except ImportError as exc:
            raise PinsUnavailable(f"RPi.GPIO is not installed: {INSTALL_HINT}") from exc
        except RuntimeError as exc:  # RPi.GPIO refuses to load off a Pi, or without /dev/gpiomem access
            raise PinsUnavailable(f"RPi.GPIO cannot run here ({exc}); on a Pi, the service user needs "
                                  "the gpio group") from exc
        self.gpio: Any = GPIO
        # A run killed earlier leaves its pins configured; RPi.GPIO would warn about every one of them.
        GPIO.setwarnings(False)
        GPIO.setmode(GPIO.BCM)
        self.used: set[int] = set()

    def setup_input(self, pin: int, pull_up: bool) -> None:
        pull = self.gpio.PUD_UP if pull_up else self.gpio.PUD_DOWN
        self.gpio.setup(pin, self.gpio.IN, pull_up_down=pull)
        self.used.add(pin)

    def setup_output(self, pin: int, level: bool) -> None:
        self.gpio.setup(pin, self.gpio.OUT, initial=self.gpio.HIGH if level else self.gpio.LOW)
        self.used.add(pin)

    def read(self, pin: int) -> bool:
        return bool(self.gpio.input(pin))

    def write(self, pin: int, level: bool) -> None:
        self.gpio.output(pin, self.gpio.HIGH if level else self.gpio.LOW)

    def close(self) -> None:
        # Named pins only: the button and the LEDs are separate processes sharing the header.
        if self.used:
            self.gpio.cleanup(sorted(self.used))
            self.used.clear()


class FakePins:
    """In-memory pins for tests and measurements: tests set input levels and read outputs.

    Thread-safe, because an actor's watcher thread reads while a test writes. Every
    change wakes `wait_until`, so tests wait on a condition instead of sleeping.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.inputs: dict[int, bool] = {}
        self.outputs: dict[int, bool] = {}
        self.writes: list[tuple[int, bool]] = []
        """Every output write in order, so a test can see flicker a final state would hide."""
        self._scripts: dict[int, deque[bool]] = {}
        self.reads = 0
        self.closed = False

    # --- the Pins protocol ------------------------------------------------------------
    def setup_input(self, pin: int, pull_up: bool) -> None:
        with self._changed:
            self.inputs.setdefault(pin, pull_up)  # an open switch reads as its pull
            self._changed.notify_all()

    def setup_output(self, pin: int, level: bool) -> None:
        self.write(pin, level)

    def read(self, pin: int) -> bool:
        with self._changed:
            if pin not in self.inputs:
                raise RuntimeError(f"GPIO{pin} was not set up as an input")
            script = self._scripts.get(pin)
            if script:
                self.inputs[pin] = script.popleft()
            self.reads += 1
            self._changed.notify_all()
            return self.inputs[pin]

    def write(self, pin: int, level: bool) -> None:
        with self._changed:
            self.outputs[pin] = level
            self.writes.append((pin, level))
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    # --- for tests ----------------------------------------------------------------------
    def set_input(self, pin: int, level: bool) -> None:
        """The switch on `pin` now holds it at `level` (any scripted bounce is cut short)."""
        with self._changed:
            self._scripts.pop(pin, None)
            self.inputs[pin] = level
            self._changed.notify_all()

    def bounce(self, pin: int, levels: Sequence[bool]) -> None:
        """Successive reads of `pin` return `levels` one by one; the last one then stays.

        A real contact bounces over a few ms; scripting it per read makes each bounce seen
        by the poller exactly once, at poll speed, with no timing luck in the test.
        """
        if not levels:
            raise ValueError("bounce needs at least one level")
        with self._changed:
            self._scripts[pin] = deque(levels)
            self._changed.notify_all()

    def bouncing(self, pin: int) -> bool:
        """True while scripted bounce levels of `pin` are still to be read."""
        with self._changed:
            return bool(self._scripts.get(pin))

    def output(self, pin: int) -> bool:
        with self._changed:
            return self.outputs.get(pin, False)

    def wait_until(self, predicate: Callable[[FakePins], bool], timeout_s: float) -> bool:
        """Block until `predicate(self)` holds (checked on every pin change) or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


def open_pins(backend: str) -> Pins:
    """`gpio`: the Pi's header through RPi.GPIO; `fake`: in-memory pins (for trying an edge set off a Pi)."""
    if backend == "gpio":
        return RpiPins()
    if backend == "fake":
        return FakePins()
    raise ValueError(f"pins backend {backend!r}: use gpio or fake")
