"""Configuration: defaults from each actor's settings dataclass, a TOML file over them, `--set` on top.

    [bus]      pub / sub addresses of the proxy
    [security] keys_dir / name: the CURVE key store (empty: none; a bus off loopback needs it)
    [sets]     actor set name -> list of actor names ("proxy" runs the bus proxy)
    [stt] [llm] [tts] ...   one table per actor, fields of its settings dataclass
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.llm_backends import LlmSettings
from actors.logger import LoggerSettings
from actors.mic import MicSettings
from actors.persona import PersonaSettings
from actors.player import PlayerSettings
from actors.stt import SttSettings
from actors.tts import TtsSettings
from actors.vad import VadSettings
from bus.sockets import BusAddress
from launch.keys import secure_address
from pi.button import GpioButtonSettings
from pi.leds import LedSettings

SETTINGS: dict[str, type] = {
    "mic": MicSettings, "vad": VadSettings, "stt": SttSettings, "llm": LlmSettings,
    "persona": PersonaSettings, "tts": TtsSettings, "player": PlayerSettings, "logger": LoggerSettings,
    "button": GpioButtonSettings, "leds": LedSettings,
}
ACTORS = ("proxy", *SETTINGS)
DEFAULT_SETS: dict[str, list[str]] = {
    "local": ["proxy", "logger", "mic", "vad", "stt", "llm", "persona", "tts", "player"],
    "server": ["proxy", "logger", "vad", "stt", "llm", "persona", "tts"],
    "pi": ["mic", "player", "button", "leds"],
    "typed": ["proxy", "logger", "llm", "persona", "tts", "player"],
}
ADDRESS_ENV = "ROCKY_RELAY_BUS"
"""host[:port] of the bus proxy, e.g. 192.168.1.20 (pub on port, sub on port+1)."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def default_config() -> dict[str, Any]:
    bus = BusAddress()
    config: dict[str, Any] = {"bus": {"pub": bus.pub_addr, "sub": bus.sub_addr},
                              "security": {"keys_dir": "", "name": ""},
                              "sets": {k: list(v) for k, v in DEFAULT_SETS.items()}}
    for name, cls in SETTINGS.items():
        config[name] = dataclasses.asdict(cls())
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, then the TOML file (if any), then the environment's bus address, then `key=value`s."""
    config = default_config()
    if path is not None:
        try:
            with open(path, "rb") as f:
                _merge(config, tomllib.load(f), str(path))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc
    if env := os.environ.get(ADDRESS_ENV):
        host, _, port = env.partition(":")
        if not host or not (port or "7750").isdigit():
            raise ConfigError(f"{ADDRESS_ENV}={env!r}: expected host or host:port (IPv4 or a name)")
        port_no = int(port or 7750)
        config["bus"] = {"pub": f"tcp://{host}:{port_no}", "sub": f"tcp://{host}:{port_no + 1}"}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. llm.max_tokens=32")
        _merge(config, {section: {field: _coerce(section, field, value.strip())}}, "--set")
    if config["persona"]["style"] == "rocky_llm":
        # The rocky_llm persona only tidies: the LLM itself must be asked for Rocky's phrasing.
        config["llm"]["style"] = "rocky"
    return config


def bus_address(config: dict[str, Any]) -> BusAddress:
    """The proxy's address, with CURVE keys when [security] keys_dir names a key store."""
    address = BusAddress(pub_addr=config["bus"]["pub"], sub_addr=config["bus"]["sub"])
    security = config.get("security", {})
    return secure_address(address, security.get("keys_dir") or None, security.get("name") or None)


def settings_for(name: str, config: dict[str, Any]) -> Any:
    return SETTINGS[name](**config[name])


def actor_set(config: dict[str, Any], name: str) -> list[str]:
    if name not in config["sets"]:
        raise ConfigError(f"no actor set {name!r}; the config has {sorted(config['sets'])}")
    return list(config["sets"][name])


def _merge(config: dict[str, Any], update: dict[str, Any], origin: str) -> None:
    for section, values in update.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: {section} must be a table ([{section}]), not {type(values).__name__}")
        if section == "sets":
            for set_name, members in values.items():
                if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                    raise ConfigError(f"{origin}: set {set_name!r} must be a list of actor names")
                unknown = set(members) - set(ACTORS)
                if unknown:
                    raise ConfigError(f"{origin}: set {set_name!r} names unknown actors {sorted(unknown)}")
                config["sets"][set_name] = list(members)
        elif section == "bus":
            for key, value in values.items():
                if key not in ("pub", "sub"):
                    raise ConfigError(f"{origin}: [bus] has no key {key!r} (pub, sub)")
                config["bus"][key] = str(value)
        elif section == "security":
            for key, value in values.items():
                if key not in ("keys_dir", "name"):
                    raise ConfigError(f"{origin}: [security] has no key {key!r} (keys_dir, name)")
                if not isinstance(value, str):
                    raise ConfigError(f"{origin}: security.{key} = {value!r} is not a string")
                config["security"][key] = value
        elif section in SETTINGS:
            fields = {f.name: f for f in dataclasses.fields(SETTINGS[section])}
            for key, value in values.items():
                if key not in fields:
                    raise ConfigError(f"{origin}: [{section}] has no key {key!r}; keys: {', '.join(fields)}")
                _check_type(section, key, value, origin)
                config[section][key] = value
        else:
            known = ", ".join(["bus", "security", "sets", *SETTINGS])
            raise ConfigError(f"{origin}: unknown section [{section}]; sections: {known}")


def _check_type(section: str, key: str, value: Any, origin: str) -> None:
    kind = typing.get_type_hints(SETTINGS[section])[key]
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, kind) and not isinstance(value, bool) if kind is int else isinstance(value, kind))
    if not ok:
        raise ConfigError(f"{origin}: {section}.{key} = {value!r} is not a {kind.__name__}")


def _coerce(section: str, field: str, value: str) -> Any:
    """Turn a command-line string into the field's type."""
    if section == "sets":
        return [name.strip() for name in value.split(",") if name.strip()]
    if section not in SETTINGS:
        return value
    hints = typing.get_type_hints(SETTINGS[section])
    kind = hints.get(field, str)
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return kind(value)
    except ValueError as exc:
        raise ConfigError(f"--set {section}.{field}={value!r}: not a {kind.__name__}") from exc
