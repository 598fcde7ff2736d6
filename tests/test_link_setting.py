"""`[satellite] link_timeout_s` reaches the link watches of the satellite's actors (it used to be documented only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.player import PlayerActor
from launch.actor_main import build_actor
from launch.config import load_config
from pi.leds import LedActor


@pytest.mark.parametrize("role", ["player", "leds"])
def test_the_satellite_link_timeout_is_what_the_edge_actors_wait(role: str, tmp_path: Path) -> None:
    config = load_config(overrides=["satellite.link_timeout_s=7.25", f"player.path={tmp_path}/{{turn}}.wav"])
    actor = build_actor(role, config)
    assert isinstance(actor, PlayerActor | LedActor)
    assert actor.link.timeout_s == 7.25
    default = build_actor(role, load_config())
    assert isinstance(default, PlayerActor | LedActor)
    assert default.link.timeout_s == load_config().satellite.link_timeout_s
