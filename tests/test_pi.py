"""The Pi edge: GPIO button and status LED on a real bus, with fake pins; the install files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from bus.messages import ActorDown, ButtonEvent, Interrupt, Message, PlayerEvent, Transcript, TurnError, TurnRecord
from bus.sockets import BusAddress, BusClient
from pi.button import Debouncer, GpioButtonActor, GpioButtonSettings
from pi.leds import COLOURS, LedActor, LedSettings
from pi.pins import FakePins, PinsUnavailable, open_pins
from tests.helpers import Watched, actor_on_bus, collect, of_type

ROOT = Path(__file__).resolve().parents[1]
PIN = 17
UP, DOWN = True, False
"""Electrical levels of an active-low switch: open (pull-up) and pressed."""
# A long lockout keeps every scripted bounce inside it even when a loaded machine polls late.
SLOW_BOUNCE = GpioButtonSettings(backend="fake", pin=PIN, debounce_ms=300.0, poll_ms=5.0, session="pi")


class WatchedButton(Watched, GpioButtonActor):
    """The real button actor; the test waits until its loop has handled what closes a turn."""


class WatchedLeds(Watched, LedActor):
    """The real LED actor; the test waits until its loop has handled a message."""


def button_events(client: BusClient, count: int, timeout_s: float = 10.0) -> list[Message]:
    """The next `count` ButtonEvents, with any Interrupt seen among them, in bus order."""
    got = collect(client, [ButtonEvent] * count, timeout_s)
    return [e.msg for e in got if isinstance(e.msg, ButtonEvent | Interrupt)]


# --- debouncing, without a clock ------------------------------------------------------------


def test_debouncer_takes_the_first_edge_and_ignores_bounces_in_the_window() -> None:
    deb = Debouncer(lockout_s=0.030, level=False)
    bounces = [(0.000, True), (0.002, False), (0.004, True), (0.011, False), (0.020, True), (0.035, True)]
    assert [deb.update(level, t) for t, level in bounces] == [True, None, None, None, None, None]
    assert deb.update(False, 0.100) is False  # a real release, after the window


def test_debouncer_ends_a_press_shorter_than_the_window_with_a_release() -> None:
    deb = Debouncer(lockout_s=0.030, level=False)
    assert deb.update(True, 0.0) is True
    assert deb.update(False, 0.010) is None
    assert deb.update(False, 0.031) is False


# --- the button on a real bus ---------------------------------------------------------------


def test_bouncing_contacts_give_one_press_and_one_release(bus_address: BusAddress) -> None:
    pins = FakePins()
    actor = WatchedButton(SLOW_BOUNCE, pins=pins)
    with actor_on_bus(actor, bus_address, listen=["button", "ctl.interrupt"]) as client:
        pins.bounce(PIN, [DOWN, UP, DOWN, UP, DOWN])
        (press,) = button_events(client, 1)
        assert pins.wait_until(lambda p: not p.bouncing(PIN), 5)
        pins.bounce(PIN, [UP, DOWN, UP, DOWN, UP])
        (release,) = button_events(client, 1)
        assert pins.wait_until(lambda p: not p.bouncing(PIN), 5)
        assert isinstance(press, ButtonEvent) and isinstance(release, ButtonEvent)
        assert (press.pressed, release.pressed) == (True, False)
        assert press.turn == release.turn and press.source == "gpio" and press.session == "pi"
        # The record closes the turn, so the next press is a new turn, not a barge-in.
        client.publish(TurnRecord(session="pi", turn=press.turn, record={"status": "ok"}))
        actor.wait_handled(TurnRecord)
        assert not actor.turn_open
        pins.set_input(PIN, DOWN)
        (again,) = button_events(client, 1)
        assert isinstance(again, ButtonEvent) and again.pressed and again.turn > press.turn


def test_press_during_an_open_turn_interrupts_it_first(bus_address: BusAddress) -> None:
    pins = FakePins()
    settings = dataclasses.replace(SLOW_BOUNCE, debounce_ms=20.0)
    with actor_on_bus(GpioButtonActor(settings, pins=pins), bus_address, listen=["button", "ctl.interrupt"]) as client:
        pins.set_input(PIN, DOWN)
        (first,) = button_events(client, 1)
        pins.set_input(PIN, UP)
        button_events(client, 1)
        pins.set_input(PIN, DOWN)  # Rocky is still thinking or speaking: barge-in
        interrupt, second = button_events(client, 1)
        assert isinstance(first, ButtonEvent) and isinstance(second, ButtonEvent)
        assert isinstance(interrupt, Interrupt)
        assert (interrupt.turn, interrupt.session, interrupt.reason) == (first.turn, "pi", "barge-in")
        assert second.pressed and second.turn > first.turn


@pytest.mark.parametrize("closer", [
    lambda turn: TurnError(session="pi", turn=turn, stage="stt", reason="no speech heard"),
    lambda turn: PlayerEvent(session="pi", turn=turn, state="finished"),
], ids=["turn-error", "playback-finished"])
def test_a_turn_closes_on_its_error_or_the_end_of_its_playback(
        bus_address: BusAddress, closer: Callable[[int], Message]) -> None:
    pins = FakePins()
    settings = dataclasses.replace(SLOW_BOUNCE, debounce_ms=20.0)
    actor = WatchedButton(settings, pins=pins)
    with actor_on_bus(actor, bus_address, listen=["button", "ctl.interrupt"]) as client:
        pins.set_input(PIN, DOWN)
        (press,) = button_events(client, 1)
        pins.set_input(PIN, UP)
        button_events(client, 1)
        client.publish(closer(press.turn))
        actor.wait_handled(type(closer(press.turn)))
        assert not actor.turn_open
        pins.set_input(PIN, DOWN)
        got = button_events(client, 1)
        assert [type(m) for m in got] == [ButtonEvent]


def test_a_press_while_a_timer_rings_cuts_the_ring_off(bus_address: BusAddress) -> None:
    """A ring is a turn the server starts: once its audio plays here, pressing interrupts it (barge-in)."""
    pins = FakePins()
    actor = WatchedButton(dataclasses.replace(SLOW_BOUNCE, debounce_ms=20.0), pins=pins)
    with actor_on_bus(actor, bus_address, listen=["button", "ctl.interrupt"]) as client:
        pins.set_input(PIN, DOWN)
        (press,) = button_events(client, 1)
        pins.set_input(PIN, UP)
        button_events(client, 1)
        client.publish(PlayerEvent(session="pi", turn=press.turn, state="finished"))
        actor.wait_handled(PlayerEvent)
        assert not actor.turn_open  # the user's turn is over: a press now would interrupt nothing
        ring = press.turn + 5000
        client.publish(PlayerEvent(session="hall", turn=ring + 1, state="started"))  # another satellite's
        client.publish(PlayerEvent(session="pi", turn=ring, state="started"))
        while actor.wait_handled(PlayerEvent).session != "pi":  # hall's may or may not reach the loop
            pass
        assert actor.turn_open
        pins.set_input(PIN, DOWN)
        interrupt, second = button_events(client, 1)
        assert isinstance(interrupt, Interrupt) and isinstance(second, ButtonEvent)
        assert (interrupt.session, interrupt.turn, interrupt.reason) == ("pi", ring, "barge-in")
        assert second.pressed and second.turn > ring


def test_a_switch_held_at_start_opens_no_turn(bus_address: BusAddress) -> None:
    pins = FakePins()
    pins.setup_input(PIN, pull_up=True)
    pins.set_input(PIN, DOWN)  # stuck down (or held) while the actor starts
    settings = dataclasses.replace(SLOW_BOUNCE, debounce_ms=20.0)
    with actor_on_bus(GpioButtonActor(settings, pins=pins), bus_address, listen=["button"]) as client:
        reads = pins.reads
        pins.set_input(PIN, UP)  # its release must not publish anything ...
        assert pins.wait_until(lambda p: p.reads >= reads + 10, 5)  # (seen by the watcher)
        pins.set_input(PIN, DOWN)  # ... so the first event is this press
        events = of_type(collect(client, [ButtonEvent], 10), ButtonEvent)
        assert [e.pressed for e in events] == [True]


def test_the_button_releases_the_pins_when_it_stops(bus_address: BusAddress) -> None:
    pins = FakePins()
    with actor_on_bus(GpioButtonActor(SLOW_BOUNCE, pins=pins), bus_address):
        pass
    assert pins.closed


# --- the status LED -----------------------------------------------------------------------


def colour(pins: FakePins) -> tuple[bool, bool, bool]:
    return pins.output(23), pins.output(24), pins.output(25)


def shown(pins: FakePins) -> list[tuple[bool, ...]]:
    """Every colour the LED showed, in order (the actor writes red, green, blue each time)."""
    writes = [level for _, level in pins.writes[3:]]  # the first three only set the pins up
    return [tuple(writes[i:i + 3]) for i in range(0, len(writes), 3)]


def shows(pins: FakePins, state: str, timeout_s: float = 5.0) -> bool:
    return pins.wait_until(lambda p: colour(p) == COLOURS[state], timeout_s)


def test_the_led_follows_a_turn_and_shows_errors(bus_address: BusAddress) -> None:
    pins = FakePins()
    actor = LedActor(LedSettings(backend="fake", error_hold_s=0.3, session="pi"), pins=pins)
    with actor_on_bus(actor, bus_address, listen=["ctl.ready"]) as client:
        assert shows(pins, "idle")
        turn = 1_700_000_000_000
        steps: list[tuple[Message, str]] = [
            (ButtonEvent(session="pi", turn=turn, pressed=True, source="gpio"), "listening"),
            (ButtonEvent(session="pi", turn=turn, pressed=False, source="gpio"), "thinking"),
            (PlayerEvent(session="pi", turn=turn, state="started"), "speaking"),
            (PlayerEvent(session="pi", turn=turn, state="finished"), "idle"),
            (Transcript(session="pi", turn=turn + 1, text="typed", source="typed"), "thinking"),
            (TurnRecord(session="pi", turn=turn + 1, record={"status": "ok"}), "idle"),
        ]
        for msg, state in steps:
            client.publish(msg)
            assert shows(pins, state), f"after {type(msg).__name__}: {actor.state}, not {state}"

        client.publish(TurnError(session="pi", turn=turn + 2, stage="llm", reason="boom"))
        assert shows(pins, "error")
        seen_red = time.monotonic()
        assert shows(pins, "idle", timeout_s=5.0)
        assert time.monotonic() - seen_red >= 0.15  # held, not flashed

        client.publish(ActorDown(actor="stt", exit_code=1, restart_in_s=0.2))
        assert shows(pins, "error") and shows(pins, "idle")
        client.publish(TurnRecord(session="pi", turn=turn + 3, record={"status": "timeout"}))
        assert shows(pins, "error") and shows(pins, "idle")


def test_the_led_ignores_older_turns_and_other_satellites(bus_address: BusAddress) -> None:
    pins = FakePins()
    actor = LedActor(LedSettings(backend="fake", session="pi"), pins=pins)
    with actor_on_bus(actor, bus_address, listen=["ctl.ready"]) as client:
        old, new = 1_700_000_000_000, 1_700_000_005_000
        client.publish(ButtonEvent(session="pi", turn=new, pressed=True, source="gpio"))  # barge-in press
        assert shows(pins, "listening")
        client.publish(PlayerEvent(session="pi", turn=old, state="stopped"))  # the cut reply reports late
        client.publish(PlayerEvent(session="kitchen", turn=new + 1, state="started"))
        client.publish(ButtonEvent(session="pi", turn=new, pressed=False, source="gpio"))
        assert shows(pins, "thinking")
        assert actor.turn == new
        assert shown(pins) == [COLOURS["idle"], COLOURS["listening"], COLOURS["thinking"]]  # never went idle


def test_a_lost_link_shows_red_until_it_is_back(bus_address: BusAddress) -> None:
    pins = FakePins()
    actor = WatchedLeds(LedSettings(backend="fake", session="pi", active_low=True), pins=pins)
    with actor_on_bus(actor, bus_address, listen=["ctl.ready"]) as client:
        lit = {state: tuple(not on for on in rgb) for state, rgb in COLOURS.items()}  # common anode
        assert pins.wait_until(lambda p: colour(p) == lit["idle"], 5)
        actor.link_lost()
        assert colour(pins) == lit["error"]
        client.publish(ButtonEvent(session="pi", turn=1, pressed=True, source="gpio"))
        actor.wait_handled(ButtonEvent)
        assert actor.turn_state == "listening"
        assert actor.state == "error" and colour(pins) == lit["error"]
        actor.link_ok()
        assert colour(pins) == lit["listening"]
    assert colour(pins) == lit["off"] and pins.closed


# --- imports, backends, install files ----------------------------------------------------


def test_the_edge_modules_import_without_rpi_gpio() -> None:
    code = ("import sys; sys.modules['RPi'] = None; import pi.button, pi.leds; "
            "print(sorted(m for m in sys.modules if m.startswith('RPi') and sys.modules[m]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_asking_for_real_pins_without_rpi_gpio_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)  # as on a machine without it, even where it is installed
    with pytest.raises(PinsUnavailable, match=r"pip install RPi\.GPIO.*\.\[pi\]"):
        open_pins("gpio")
    with pytest.raises(PinsUnavailable):
        GpioButtonActor(GpioButtonSettings(backend="gpio")).on_start()
    with pytest.raises(ValueError, match="gpio or fake"):
        open_pins("wiringpi")
    assert isinstance(open_pins("fake"), FakePins)


def test_the_sample_edge_config_matches_the_settings() -> None:
    config = tomllib.loads((ROOT / "pi" / "edge.toml").read_text())
    for section, cls in (("button", GpioButtonSettings), ("leds", LedSettings)):
        assert set(config[section]) <= {f.name for f in dataclasses.fields(cls)}, section
        cls(**config[section])
    assert config["bus"] == {"pub": "tcp://SERVER:7750", "sub": "tcp://SERVER:7751"}
    assert set(config["sets"]["pi"]) == {"mic", "player", "button", "leds"}
    assert config["button"]["session"] == config["leds"]["session"]


def test_the_install_script_and_unit_are_well_formed() -> None:
    script = ROOT / "pi" / "install.sh"
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    text = script.read_text()
    assert '".[pi]"' in text and "[server]" not in text  # edge extras only: no models on the Pi
    unit = (ROOT / "pi" / "rocky-relay-edge.service").read_text()
    for line in ("Restart=always", "RestartSec=", "User=rocky-relay", "launch pi", "/.venv/bin/rocky-relay"):
        assert line in unit
