"""Configuration: defaults from each actor's settings dataclass, a TOML file over them, `--set` on top.

    [bus]      pub / sub addresses of the proxy
    [security] keys_dir / name: the CURVE key store (empty: none; a bus off loopback needs it)
    [sets]     actor set name -> list of actor names ("proxy" runs the bus proxy)
    [stt] [llm] [tts] ...   one table per actor, fields of its settings dataclass

`load_config` reads it once into a typed `Config`; `config.of(LlmSettings)` (or `config.section("llm")`)
is a section's settings. Child processes get `Config.to_dict()` as a private JSON file, never on their
command line, and rebuild it with `Config.from_dict`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from actors.persona import PersonaSettings
from actors.table import ACTORS as ACTOR_TABLE
from actors.table import PROXY, REPLICABLE, default_sets
from bus.keys import secure_address
from bus.sockets import BusAddress
from launch.config_checks import check_numbers, check_templates
from launch.config_load import MAX_CONFIG_BYTES as MAX_CONFIG_BYTES
from launch.config_load import ConfigError as ConfigError
from launch.config_load import coerce, merge
from launch.config_load import read_toml as read_toml

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
    priority: int = -10
    """Scheduling nice the launcher asks for its session's autogroup, which every actor it starts shares, so
    that background work in other sessions yields to a turn (actors/cpu.py `claim_priority`); below 0 needs
    CAP_SYS_NICE or an RLIMIT_NICE allowance, and without it the set runs at a fair share and says so; 0: leave
    it. Applies to whatever set the launcher starts, an edge set too."""


@dataclass
class BusSettings:
    """[bus]: where the proxy listens."""

    pub: str = BusAddress().pub_addr
    """Publishers connect here (the proxy's XSUB side)."""
    sub: str = BusAddress().sub_addr
    """Subscribers connect here (its XPUB side)."""


@dataclass
class SecuritySettings:
    """[security]: the CURVE key store (empty keys_dir: none; a bus off loopback needs it)."""

    keys_dir: str = ""
    name: str = ""
    """This satellite's key in the store (empty on the server)."""


SECTIONS: dict[str, type] = {**SETTINGS, "satellite": SatelliteSettings, "server": ServerSettings}
"""Every section with a settings class: the actors', then the machine's roles."""
SECTION_OF: dict[type, str] = {cls: name for name, cls in reversed(SECTIONS.items())}
"""The section of each settings class (the first, should two sections share one)."""
DEFAULT_SETS: dict[str, list[str]] = default_sets()
ADDRESS_ENV = "ROCKY_RELAY_BUS"
"""host[:port] of the bus proxy, e.g. 192.168.1.20 (pub on port, sub on port+1)."""
SettingsT = TypeVar("SettingsT")


@dataclass
class Config:
    """The whole launch config, typed: the fixed sections, the sets, and one settings object per section."""

    bus: BusSettings = field(default_factory=BusSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    sets: dict[str, list[str]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_SETS))
    sections: dict[str, Any] = field(default_factory=lambda: {name: cls() for name, cls in SECTIONS.items()})
    """Each actor's section and satellite, server: an instance of its class in `SECTIONS`."""

    @property
    def satellite(self) -> SatelliteSettings:
        return self.of(SatelliteSettings)

    @property
    def server(self) -> ServerSettings:
        return self.of(ServerSettings)

    def of(self, cls: type[SettingsT]) -> SettingsT:
        """The settings of the section whose class is `cls`, e.g. `config.of(LlmSettings).model`."""
        if cls not in SECTION_OF:
            raise ConfigError(f"no config section has the settings class {cls.__name__}")
        found = self.sections[SECTION_OF[cls]]
        assert isinstance(found, cls)
        return found

    def section(self, name: str) -> Any:
        """The settings object of section `name` (an actor's, "satellite" or "server")."""
        if name not in self.sections:
            raise ConfigError(f"no config section [{name}]; sections: {', '.join(self.sections)}")
        return self.sections[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain data ({section: {key: value}}, as TOML or JSON write it): a fresh copy."""
        return {"bus": dataclasses.asdict(self.bus), "security": dataclasses.asdict(self.security),
                "sets": copy.deepcopy(self.sets),
                **{name: dataclasses.asdict(value) for name, value in self.sections.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "config") -> Config:
        """A config from plain data over the defaults, checked key by key (what a child process reads)."""
        plain = Config().to_dict()
        merge(plain, copy.deepcopy(data), origin, SECTIONS, ACTORS)  # a copy: the caller's lists stay its own
        sections: dict[str, Any] = {}
        for name, kind in SECTIONS.items():
            try:  # a settings class may check its own values (__post_init__): its word, as a config error
                sections[name] = kind(**plain[name])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{origin}: [{name}] {exc}") from exc
        return Config(bus=BusSettings(**plain["bus"]), security=SecuritySettings(**plain["security"]),
                      sets=plain["sets"], sections=sections)


def default_config() -> Config:
    return Config()


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the TOML file (if any), then the environment's bus address, then `key=value`s."""
    plain = default_config().to_dict()
    if path is not None:
        merge(plain, read_toml(path), str(path), SECTIONS, ACTORS)
    if env := os.environ.get(ADDRESS_ENV):
        host, _, port = env.partition(":")
        if not host or not (port or "7750").isdigit():
            raise ConfigError(f"{ADDRESS_ENV}={env!r}: expected host or host:port (IPv4 or a name)")
        port_no = int(port or 7750)
        plain["bus"] = {"pub": f"tcp://{host}:{port_no}", "sub": f"tcp://{host}:{port_no + 1}"}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. llm.max_tokens=32")
        merge(plain, {section: {name: coerce(section, name, value.strip(), SECTIONS)}}, "--set", SECTIONS, ACTORS)
    config = Config.from_dict(plain)
    if session := config.satellite.session:  # one id for the whole satellite
        config.section("button").session = config.section("leds").session = session
    replica_counts(config)  # refuse a bad replicas line now, not when the launcher expands it
    if config.of(PersonaSettings).style == "rocky_llm":
        # The rocky_llm persona only tidies: the LLM itself must be asked for Rocky's phrasing.
        config.section("llm").style = "rocky"
    if problems := check_numbers(config.sections) + check_templates(config.sections):
        raise ConfigError("; ".join(problems))
    return config


def replica_counts(config: Config) -> dict[str, int]:
    """[server] replicas as {actor: count}, e.g. "llm=2,tts=2" -> {"llm": 2, "tts": 2}."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in config.server.replicas.split(","))):
        match = re.fullmatch(r"(\w+)\s*=\s*(\d+)", item)
        if not match or match[1] not in REPLICABLE or not 1 <= int(match[2]) <= 8:
            raise ConfigError(f"server.replicas {item!r}: expected ACTOR=N with ACTOR one of "
                              f"{', '.join(REPLICABLE)} and N from 1 to 8")
        counts[match[1]] = int(match[2])
    return counts


def expand_replicas(config: Config, names: list[str]) -> list[str]:
    """An actor set with replicated actors named NAME-1, NAME-2, ... (one process each)."""
    counts = replica_counts(config)
    out: list[str] = []
    for name in names:
        n = counts.get(name, 1)
        out += [name] if n == 1 else [f"{name}-{i}" for i in range(1, n + 1)]
    return out


def bus_address(config: Config) -> BusAddress:
    """The proxy's address, with CURVE keys when [security] keys_dir names a key store."""
    address = BusAddress(pub_addr=config.bus.pub, sub_addr=config.bus.sub)
    return secure_address(address, config.security.keys_dir or None, config.security.name or None)


def settings_for(name: str, config: Config) -> Any:
    """A copy of the settings of actor `name` (a replica NAME-i has NAME's), for the actor to own."""
    return copy.deepcopy(config.section(name.split("-")[0]))


def actor_set(config: Config, name: str) -> list[str]:
    if name not in config.sets:
        raise ConfigError(f"no actor set {name!r}; the config has {sorted(config.sets)}")
    return list(config.sets[name])
