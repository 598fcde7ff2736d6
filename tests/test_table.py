"""The table of actors (actors/table.py) is what the rest of the system is built from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from actors.table import ACTORS, EDGE, REPLICABLE, default_sets, spec_of
from bus.messages import kinds_of
from launch.actor_main import build_actor
from launch.config import SETTINGS, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_each_actor_subscribes_to_what_its_row_says_it_handles_and_nothing_else() -> None:
    for spec in ACTORS:
        subscribed = spec.actor_class().topics  # type: ignore[attr-defined]
        for handled in spec.handles:
            assert any(t.startswith(prefix) for t in kinds_of(handled) for prefix in subscribed), (
                f"{spec.name} handles {handled.__name__} but subscribes only to {subscribed}")
        for prefix in subscribed:
            assert any(t.startswith(prefix) for handled in spec.handles for t in kinds_of(handled)), (
                f"{spec.name} subscribes to {prefix!r}, which no message of its row comes on")


def test_actors_that_pick_handlers_by_type_handle_what_their_row_says() -> None:
    picked = [spec for spec in ACTORS if spec.actor_class().handlers]  # type: ignore[attr-defined]
    assert {spec.name for spec in picked} >= {"vad", "stt", "llm", "persona", "tts"}
    for spec in picked:
        assert set(spec.actor_class().handlers) == set(spec.handles), spec.name  # type: ignore[attr-defined]


def test_config_builder_and_sets_come_from_the_table() -> None:
    assert list(SETTINGS) == [spec.name for spec in ACTORS]
    config = load_config(None, ["satellite.session=kitchen", "satellite.link_timeout_s=9"])
    for spec in ACTORS:
        actor = build_actor(spec.name, config)
        assert type(actor) is spec.actor_class()
        assert isinstance(actor.settings, spec.settings)  # type: ignore[attr-defined]
        assert actor.only_session == ("kitchen" if spec.runs_on == "edge" else "")
        if spec.watches_link:
            assert actor.link_timeout_s == 9
            if hasattr(actor, "link"):
                assert actor.link.timeout_s == 9
    assert set(EDGE) == {"mic", "player", "button", "leds", "audible"}
    assert set(REPLICABLE) == {"vad", "stt", "llm", "persona", "tts"}
    sets = default_sets()
    assert sets["pi"] == ["mic", "player", "button", "leds"]
    assert all(sets[name][0] == "proxy" for name in ("local", "server", "typed"))
    assert set(sets["local"]) == {"proxy", "logger", "mic", "vad", "stt", "tools", "llm", "persona", "tts", "player"}


def test_a_replica_has_its_actors_row() -> None:
    spec = spec_of("llm-2")
    assert spec is not None and spec.name == "llm"
    assert spec_of("proxy") is None and spec_of("stranger") is None


def test_a_toy_actor_takes_one_row_and_its_class() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.toy_actor"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"said": ["hi there"], "in_local_set": True, "config": {"greeting": "hi there"}}
