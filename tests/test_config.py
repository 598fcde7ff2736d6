"""Tests for launch.config: defaults, TOML merging, --set overrides, the bus address variable and errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actors.llm_settings import LlmSettings
from bus.sockets import BusAddress
from launch.config import (
    ADDRESS_ENV,
    SETTINGS,
    BusSettings,
    ConfigError,
    actor_set,
    bus_address,
    default_config,
    load_config,
    settings_for,
)

EXPECTED_ACTORS = {"mic", "vad", "stt", "llm", "persona", "tts", "player", "logger", "button", "leds", "audible",
                   "wyoming", "web", "tools"}


@pytest.fixture(autouse=True)
def no_bus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment must not leak a bus address into these tests."""
    monkeypatch.delenv(ADDRESS_ENV, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rocky.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_config_has_every_actor_section_and_set() -> None:
    config = default_config()
    assert set(SETTINGS) == EXPECTED_ACTORS
    assert set(config.to_dict()) == {"bus", "security", "sets", "satellite", "server"} | EXPECTED_ACTORS
    for name, cls in SETTINGS.items():
        assert config.section(name) == cls() and config.of(cls) == cls()
        assert settings_for(name, config) == cls()
    assert {"local", "server", "pi", "typed"} <= set(config.sets)
    assert actor_set(config, "pi") == ["mic", "player", "button", "leds"]
    assert "proxy" in actor_set(config, "local")
    assert bus_address(config) == BusAddress()


def test_default_config_is_a_fresh_copy_each_time() -> None:
    first = default_config()
    first.sets["local"].append("ghost")
    first.of(LlmSettings).max_tokens = 1
    second = default_config()
    assert "ghost" not in second.sets["local"]
    assert second.of(LlmSettings).max_tokens != 1


def test_load_config_without_file_or_overrides_is_the_default() -> None:
    assert load_config() == default_config()


def test_load_config_merges_toml_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[bus]
pub = "tcp://10.0.0.5:9000"

[sets]
mini = ["proxy", "llm", "tts"]

[llm]
max_tokens = 16
temperature = 0.25

[mic]
realtime = false
""")
    config = load_config(path)
    assert config.section("llm").max_tokens == 16
    assert config.section("llm").temperature == 0.25
    assert config.section("mic").realtime is False
    assert config.section("llm").top_p == default_config().section("llm").top_p  # untouched keys keep defaults
    assert actor_set(config, "mini") == ["proxy", "llm", "tts"]
    assert actor_set(config, "local") == default_config().sets["local"]
    assert bus_address(config) == BusAddress(pub_addr="tcp://10.0.0.5:9000", sub_addr=BusAddress().sub_addr)


def test_set_overrides_coerce_to_field_types(tmp_path: Path) -> None:
    path = write(tmp_path, "[llm]\nmax_tokens = 16\n")
    config = load_config(path, [
        "llm.max_tokens=32",
        "llm.temperature = 0.2",
        "mic.realtime=false",
        "stt.language=de",
        "tts.length_scale=2",
        "bus.sub=tcp://h:1",
    ])
    assert config.section("llm").max_tokens == 32 and type(config.section("llm").max_tokens) is int
    assert config.section("llm").temperature == 0.2 and type(config.section("llm").temperature) is float
    assert config.section("mic").realtime is False
    assert config.section("stt").language == "de"
    assert config.section("tts").length_scale == 2.0 and type(config.section("tts").length_scale) is float
    assert config.bus.sub == "tcp://h:1"


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True),
    ("false", False), ("False", False), ("0", False), ("no", False),
])
def test_bool_override_spellings(text: str, expected: bool) -> None:
    assert load_config(overrides=[f"mic.realtime={text}"]).section("mic").realtime is expected


@pytest.mark.parametrize(("toml", "names"), [
    ("[nosuch]\nx = 1\n", ["nosuch", "llm"]),
    ("[llm]\nmax_tokenz = 3\n", ["max_tokenz", "max_tokens", "temperature"]),
    ("[bus]\nhost = \"x\"\n", ["host", "pub", "sub"]),
    ("[sets]\nodd = [\"proxy\", \"ghost\"]\n", ["odd", "ghost"]),
])
def test_bad_file_content_raises_config_error_naming_the_key(tmp_path: Path, toml: str, names: list[str]) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(("override", "names"), [
    ("mic.realtime=maybe", ["mic.realtime", "maybe", "bool"]),
    ("llm.max_tokens=lots", ["llm.max_tokens", "lots", "int"]),
    ("llm.max_tokens=1.5", ["llm.max_tokens", "int"]),
    ("llm.temperature=warm", ["llm.temperature", "float"]),
    ("llm.max_tokens", ["llm.max_tokens", "section.key=value"]),
    ("max_tokens=3", ["max_tokens=3", "section.key=value"]),
    ("llm.max_tokenz=3", ["max_tokenz", "max_tokens"]),
    ("nosuch.key=1", ["nosuch"]),
])
def test_bad_override_raises_config_error_naming_the_key(override: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    for name in names:
        assert name in str(info.value)


def test_missing_config_file_raises_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_config(missing)


def test_invalid_toml_raises_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[llm\nmax_tokens = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_bus_env_sets_tcp_addresses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ADDRESS_ENV, "192.168.1.20:8000")
    config = load_config(write(tmp_path, "[bus]\npub = \"tcp://ignored:1\"\n"))
    assert bus_address(config) == BusAddress(pub_addr="tcp://192.168.1.20:8000", sub_addr="tcp://192.168.1.20:8001")
    # --set still wins over the environment.
    config = load_config(overrides=["bus.pub=tcp://other:5"])
    assert config.bus == BusSettings(pub="tcp://other:5", sub="tcp://192.168.1.20:8001")


def test_bus_env_without_port_uses_default_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADDRESS_ENV, "rocky-server")
    config = load_config()
    assert config.bus == BusSettings(pub="tcp://rocky-server:7750", sub="tcp://rocky-server:7751")


def test_actor_set_unknown_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="no-such-set") as info:
        actor_set(default_config(), "no-such-set")
    assert "local" in str(info.value)


@pytest.mark.parametrize("toml", ['llm = 5\n', '[llm]\nmax_tokens = "lots"\n', '[sets]\nmini = "llm"\n',
                                  '[persona]\nstreaming = 1\n'])
def test_wrong_shapes_and_types_in_a_file_are_config_errors(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError):
        load_config(path)


def test_a_set_can_be_given_on_the_command_line() -> None:
    assert load_config(None, ["sets.mini=llm, persona"]).sets["mini"] == ["llm", "persona"]


@pytest.mark.parametrize("value", ["host:abc", ":7000"])
def test_a_bad_bus_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ROCKY_RELAY_BUS", value)
    with pytest.raises(ConfigError, match="ROCKY_RELAY_BUS"):
        load_config()


def test_rocky_llm_persona_asks_the_llm_for_rocky_phrasing() -> None:
    assert load_config(None, []).section("llm").style == "plain"
    assert load_config(None, ["persona.style=rocky_llm"]).section("llm").style == "rocky"
