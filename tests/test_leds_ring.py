"""The Pi's status LED while a timer rings: magenta, flashing, over the turn's own state, on a real bus with fake
pins and a clock the test moves (the flashes come from the actor's poll, never from waiting here)."""

from __future__ import annotations

from bus.messages import ButtonEvent, PlayerEvent, ToolUsed
from bus.sockets import BusAddress
from pi.leds import COLOURS, RING_FLASH_S, LedSettings
from pi.pins import FakePins
from tests.helpers import actor_on_bus
from tests.test_pi import WatchedLeds, shown, shows

ASKED, RING = 1_700_000_000_000, 1_700_000_009_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rang(session: str, turn: int) -> ToolUsed:
    return ToolUsed(session=session, turn=turn, name="timer", by="timers", arguments={"label": "tea"}, result="rang")


def test_a_ring_flashes_magenta_over_the_turn_until_its_playback_ends(bus_address: BusAddress) -> None:
    pins, clock = FakePins(), Clock()
    actor = WatchedLeds(LedSettings(backend="fake", session="pi"), pins=pins, clock=clock)
    with actor_on_bus(actor, bus_address, listen=["ctl.ready"]) as client:
        assert shows(pins, "idle")
        client.publish(ButtonEvent(session="pi", turn=ASKED, pressed=True, source="gpio"))
        client.publish(rang("pi", RING))
        client.publish(PlayerEvent(session="pi", turn=RING, state="started"))
        actor.wait_handled(PlayerEvent)
        assert actor.state == "listening"  # a held button is shown first: the mic is capturing
        client.publish(ButtonEvent(session="pi", turn=ASKED, pressed=False, source="gpio"))
        assert shows(pins, "ringing")
        assert (actor.turn, actor.turn_state) == (ASKED, "thinking")  # the question's release still counted
        clock.now += RING_FLASH_S
        assert shows(pins, "off") and actor.state == "ringing"  # the dark half of a flash
        clock.now += RING_FLASH_S
        assert shows(pins, "ringing")
        client.publish(PlayerEvent(session="pi", turn=RING, state="finished"))
        assert shows(pins, "thinking")  # the question asked before the ring is still being answered
        client.publish(PlayerEvent(session="pi", turn=ASKED, state="started"))
        assert shows(pins, "speaking")


def test_a_stopped_ring_ends_its_cue_and_another_satellites_ring_is_not_shown(bus_address: BusAddress) -> None:
    pins = FakePins()
    actor = WatchedLeds(LedSettings(backend="fake", session="pi"), pins=pins, clock=Clock())
    with actor_on_bus(actor, bus_address, listen=["ctl.ready"]) as client:
        assert shows(pins, "idle")
        client.publish(rang("kitchen", RING))
        client.publish(PlayerEvent(session="kitchen", turn=RING, state="started"))
        actor.wait_handled(PlayerEvent)
        assert actor.state == "idle"
        client.publish(rang("pi", RING + 1))
        client.publish(PlayerEvent(session="pi", turn=RING + 1, state="started"))
        assert shows(pins, "ringing")
        client.publish(PlayerEvent(session="pi", turn=RING + 1, state="stopped"))  # a press cut it off
        assert shows(pins, "idle")
        assert shown(pins) == [COLOURS["idle"], COLOURS["ringing"], COLOURS["idle"]]
        assert actor.turn == 0  # a ring is a cue, not a turn the light follows
