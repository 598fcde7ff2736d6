"""Configuration: defaults from each actor's settings dataclass, a TOML file over them, `--set` on top.

    [bus]      pub / sub addresses of the proxy
    [security] keys_dir / name: the CURVE key store (empty: none; a bus off loopback needs it)
    [sets]     actor set name -> list of actor names ("proxy" runs the bus proxy)
    [stt] [llm] [tts] ...   one table per actor, fields of its settings dataclass
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.table import ACTORS as ACTOR_TABLE
from actors.table import PROXY, REPLICABLE, default_sets
from bus.keys import secure_address
from bus.sockets import BusAddress
from launch.config_checks import check_numbers, check_templates

SETTINGS: dict[str, type] = {spec.name: spec.settings for spec in ACTOR_TABLE}
"""Each actor's config section and its settings class (from the table of actors, actors/table.py)."""
ACTORS = (PROXY, *SETTINGS)


@dataclass
class SatelliteSettings:
    """This machine as a satellite (a Pi with mic, button, player, LEDs) of a server elsewhere."""

    session: str = ""
    """Satellite id: its edge actors serve only this session's turns, and its button and LEDs use it.
    Empty: one machine, every session."""
    link_timeout_s: float = 3.5
    """No heartbeat from the other side for this long: the link is lost (LEDs red, turn ended, earcon)."""


@dataclass
class ServerSettings:
    """The machine that runs the heavy actors for one or more satellites."""

    max_queued_turns: int = 4
    """New turns waiting for the STT or LLM beyond this are refused as busy (earcon on the satellite); 0: no bound."""
    replicas: str = ""
    """Heavy actors to run more than once, e.g. "llm=2,tts=2"; each satellite's turns go to one of them."""


SECTIONS: dict[str, type] = {**SETTINGS, "satellite": SatelliteSettings, "server": ServerSettings}
"""Every section with a settings class: the actors', then the machine's roles."""
DEFAULT_SETS: dict[str, list[str]] = default_sets()
ADDRESS_ENV = "ROCKY_RELAY_BUS"
"""host[:port] of the bus proxy, e.g. 192.168.1.20 (pub on port, sub on port+1)."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def default_config() -> dict[str, Any]:
    bus = BusAddress()
    config: dict[str, Any] = {"bus": {"pub": bus.pub_addr, "sub": bus.sub_addr},
                              "security": {"keys_dir": "", "name": ""},
                              "sets": {k: list(v) for k, v in DEFAULT_SETS.items()}}
    for name, cls in SECTIONS.items():
        config[name] = dataclasses.asdict(cls())
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, then the TOML file (if any), then the environment's bus address, then `key=value`s."""
    config = default_config()
    if path is not None:
        _merge(config, read_toml(path), str(path))
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
    if session := config["satellite"]["session"]:  # one id for the whole satellite
        config["button"]["session"] = config["leds"]["session"] = session
    replica_counts(config)  # refuse a bad replicas line now, not when the launcher expands it
    if config["persona"]["style"] == "rocky_llm":
        # The rocky_llm persona only tidies: the LLM itself must be asked for Rocky's phrasing.
        config["llm"]["style"] = "rocky"
    if problems := check_numbers(config, SECTIONS) + check_templates(config):
        raise ConfigError("; ".join(problems))
    return config


MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few KB; anything past this (or /dev/zero) is not one."""


def read_toml(path: str | Path) -> dict[str, Any]:
    """A config file's tables; a clear ConfigError for what is not a small UTF-8 TOML file."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the mode check below refuses it anyway.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"config file {path}: not a regular file")
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a config file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start}); a config is a TOML file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc


def replica_counts(config: dict[str, Any]) -> dict[str, int]:
    """[server] replicas as {actor: count}, e.g. "llm=2,tts=2" -> {"llm": 2, "tts": 2}."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in config["server"]["replicas"].split(","))):
        match = re.fullmatch(r"(\w+)\s*=\s*(\d+)", item)
        if not match or match[1] not in REPLICABLE or not 1 <= int(match[2]) <= 8:
            raise ConfigError(f"server.replicas {item!r}: expected ACTOR=N with ACTOR one of "
                              f"{', '.join(REPLICABLE)} and N from 1 to 8")
        counts[match[1]] = int(match[2])
    return counts


def expand_replicas(config: dict[str, Any], names: list[str]) -> list[str]:
    """An actor set with replicated actors named NAME-1, NAME-2, ... (one process each)."""
    counts = replica_counts(config)
    out: list[str] = []
    for name in names:
        n = counts.get(name, 1)
        out += [name] if n == 1 else [f"{name}-{i}" for i in range(1, n + 1)]
    return out


def bus_address(config: dict[str, Any]) -> BusAddress:
    """The proxy's address, with CURVE keys when [security] keys_dir names a key store."""
    address = BusAddress(pub_addr=config["bus"]["pub"], sub_addr=config["bus"]["sub"])
    security = config.get("security", {})
    return secure_address(address, security.get("keys_dir") or None, security.get("name") or None)


def settings_for(name: str, config: dict[str, Any]) -> Any:
    """The settings of actor `name` (a replica NAME-i has NAME's)."""
    role = name.split("-")[0]
    return SETTINGS[role](**config[role])


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
        elif section in SECTIONS:
            fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
            for key, value in values.items():
                if key not in fields:
                    raise ConfigError(f"{origin}: [{section}] has no key {key!r}; keys: {', '.join(fields)}")
                _check_type(section, key, value, origin)
                config[section][key] = value
        else:
            known = ", ".join(["bus", "security", "sets", *SECTIONS])
            raise ConfigError(f"{origin}: unknown section [{section}]; sections: {known}")


def _check_type(section: str, key: str, value: Any, origin: str) -> None:
    kind = typing.get_type_hints(SECTIONS[section])[key]
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, kind) and not isinstance(value, bool) if kind is int else isinstance(value, kind))
    if not ok:
        raise ConfigError(f"{origin}: {section}.{key} = {value!r} is not a {kind.__name__}")


def _coerce(section: str, field: str, value: str) -> Any:
    """Turn a command-line string into the field's type."""
    if section == "sets":
        return [name.strip() for name in value.split(",") if name.strip()]
    if section not in SECTIONS:
        return value
    hints = typing.get_type_hints(SECTIONS[section])
    kind = hints.get(field, str)
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return kind(value)
    except ValueError as exc:
        raise ConfigError(f"--set {section}.{field}={value!r}: not a {kind.__name__}") from exc
