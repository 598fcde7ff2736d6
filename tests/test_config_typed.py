"""The typed config: sections by class, the plain form the child processes read, and list-typed settings."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.llm_settings import LlmSettings
from launch.config import SECTIONS, Config, ConfigError, ServerSettings, load_config
from launch.config_doc import toml_value
from launch.config_load import coerce, merge


@dataclass
class ToolsLike:
    """A section with list-typed settings, as [[tools.mcp]] tables are."""

    mcp: list[dict[str, Any]] = field(default_factory=list)
    """Servers to start, one table each."""
    allow: list[str] = field(default_factory=list)
    """Names allowed."""


TOOLS = {"tools": ToolsLike}


def merged(update: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {"tools": {"mcp": [], "allow": []}, "sets": {}}
    merge(plain, update, "t.toml", TOOLS, ())
    return plain


def test_a_section_is_reached_by_its_class_or_its_name() -> None:
    config = load_config(None, ["llm.max_tokens=12", "server.max_queued_turns=2"])
    assert config.of(LlmSettings).max_tokens == 12 and config.section("llm") is config.of(LlmSettings)
    assert config.server == ServerSettings(max_queued_turns=2) and config.of(ServerSettings) is config.server
    assert set(config.sections) == set(SECTIONS)
    with pytest.raises(ConfigError, match=r"no config section \[nosuch\]"):
        config.section("nosuch")
    with pytest.raises(ConfigError, match="ToolsLike"):
        config.of(ToolsLike)


def test_the_plain_form_rebuilds_the_same_config_through_json() -> None:
    config = load_config(None, ["llm.api_key=sk-secret", "satellite.session=kitchen", "sets.mini=llm, tts"])
    again = Config.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.of(LlmSettings).api_key == "sk-secret"
    assert again.section("button").session == "kitchen" and again.sets["mini"] == ["llm", "tts"]


def test_a_bad_key_in_the_plain_form_is_named() -> None:
    data = Config().to_dict()
    data["llm"]["max_tokenz"] = 3
    with pytest.raises(ConfigError, match=r"child\.json: .*max_tokenz"):
        Config.from_dict(data, "child.json")


def test_an_array_of_tables_is_a_list_setting() -> None:
    update = tomllib.loads('[tools]\nallow = ["clock"]\n[[tools.mcp]]\ncommand = ["mcp-server-time"]\n'
                           '[[tools.mcp]]\ncommand = ["calc"]\nname = "calc"\n')
    plain = merged(update)
    assert plain["tools"]["mcp"] == [{"command": ["mcp-server-time"]}, {"command": ["calc"], "name": "calc"}]
    assert ToolsLike(**plain["tools"]).allow == ["clock"]


@pytest.mark.parametrize(("toml", "named"), [
    ('[tools]\nallow = "clock"\n', "tools.allow = 'clock' is not a list[str]"),
    ('[tools]\nallow = ["clock", 3]\n', "tools.allow[1] = 3 is not a str"),
    ('[tools]\nmcp = ["mcp-server-time"]\n', "tools.mcp[0] = 'mcp-server-time' is not a dict[str, Any]"),
])
def test_a_list_setting_is_checked_item_by_item(toml: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        merged(tomllib.loads(toml))
    assert str(info.value) == f"t.toml: {named}"


def test_a_list_setting_on_the_command_line() -> None:
    assert coerce("tools", "allow", "clock, calc", TOOLS) == ["clock", "calc"]
    assert coerce("tools", "allow", '["a,b"]', TOOLS) == ["a,b"]
    assert coerce("tools", "mcp", '[{command = ["mcp-server-time"]}]', TOOLS) == [{"command": ["mcp-server-time"]}]
    with pytest.raises(ConfigError, match=r"--set tools.mcp='\[\{': not a list\[dict\[str, Any\]\]"):
        coerce("tools", "mcp", "[{", TOOLS)


def test_the_config_doc_writes_a_list_of_tables_as_toml_that_reads_back() -> None:
    value = [{"command": ["mcp-server-time", "--local-timezone=UTC"], "name": "time"}, {"odd key": True}]
    assert tomllib.loads(f"mcp = {toml_value(value)}")["mcp"] == value


@dataclass
class Checked:
    level: int = 1
    """Must be odd."""

    def __post_init__(self) -> None:
        if self.level % 2 == 0:
            raise ValueError(f"level = {self.level}: must be odd")


def test_a_settings_class_that_refuses_its_values_gives_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SECTIONS, "checked", Checked)
    assert Config.from_dict({"checked": {"level": 3}}).section("checked") == Checked(level=3)
    with pytest.raises(ConfigError, match=r"^t\.json: \[checked\] level = 4: must be odd$"):
        Config.from_dict({"checked": {"level": 4}}, "t.json")
