"""Reading and merging config data: a TOML file, `--set` strings and the children's JSON, checked key by key.

The data is plain here (`{section: {key: value}}`), each value checked against the type hint of its field
as it is merged; launch/config.py turns the result into the typed `Config`.
"""

from __future__ import annotations

import os
import stat
import tomllib
import typing
from collections.abc import Collection, Mapping
from typing import Any

MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few KB; anything past this (or /dev/zero) is not one."""
FIXED_KEYS = {"bus": ("pub", "sub"), "security": ("keys_dir", "name")}
"""The keys of the sections with no settings class of an actor or role, all strings."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
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


def merge(config: dict[str, Any], update: dict[str, Any], origin: str, sections: Mapping[str, type],
          actors: Collection[str]) -> None:
    """Put `update` over `config`, refusing an unknown section or key and a value of the wrong type."""
    for section, values in update.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: {section} must be a table ([{section}]), not {type(values).__name__}")
        if section == "sets":
            for set_name, members in values.items():
                if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                    raise ConfigError(f"{origin}: set {set_name!r} must be a list of actor names")
                unknown = set(members) - set(actors)
                if unknown:
                    raise ConfigError(f"{origin}: set {set_name!r} names unknown actors {sorted(unknown)}")
                config["sets"][set_name] = list(members)
        elif section in FIXED_KEYS:
            keys = FIXED_KEYS[section]
            for key, value in values.items():
                if key not in keys:
                    raise ConfigError(f"{origin}: [{section}] has no key {key!r} ({', '.join(keys)})")
                if section == "bus":  # an address may be written as anything that prints as one
                    value = str(value)
                elif not isinstance(value, str):
                    raise ConfigError(f"{origin}: {section}.{key} = {value!r} is not a string")
                config[section][key] = value
        elif section in sections:
            hints = typing.get_type_hints(sections[section])
            for key, value in values.items():
                if key not in hints:
                    raise ConfigError(f"{origin}: [{section}] has no key {key!r}; keys: {', '.join(hints)}")
                if problem := misfit(value, hints[key], f"{section}.{key}"):
                    raise ConfigError(f"{origin}: {problem}")
                config[section][key] = value
        else:
            known = ", ".join(["bus", "security", "sets", *sections])
            raise ConfigError(f"{origin}: unknown section [{section}]; sections: {known}")


def misfit(value: Any, kind: Any, key: str) -> str | None:
    """None when `value` (from TOML or JSON) is of the field type `kind` (a scalar, list[X] or dict[str, X]);
    else what is wrong, naming the innermost wrong part: `tools.mcp[1].command = 'x' is not a list[str]`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list and isinstance(value, list):
        return next((bad for i, item in enumerate(value) if (bad := misfit(item, args[0], f"{key}[{i}]"))), None)
    if origin is dict and isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                return f"{key}: the key {name!r} is not a string"
            if bad := misfit(item, args[1], f"{key}.{name}"):
                return bad
        return None
    return None if _scalar_fits(value, kind) else f"{key} = {value!r} is not a {type_name(kind)}"


def _scalar_fits(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:  # TOML writes 2 for 2.0
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return typing.get_origin(kind) is None and isinstance(kind, type) and isinstance(value, kind)


def type_name(kind: Any) -> str:
    """`int`, `list[str]`, `list[dict[str, Any]]`: the type as a reader of the config writes it."""
    if typing.get_origin(kind) is None:
        return getattr(kind, "__name__", str(kind))
    return str(kind).replace("typing.", "")


def coerce(section: str, field: str, value: str, sections: Mapping[str, type]) -> Any:
    """Turn a command-line string into the field's type (merge then checks it like a file's value)."""
    if section == "sets":
        return _names(value)
    if section not in sections:
        return value
    kind = typing.get_type_hints(sections[section]).get(field, str)
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if typing.get_origin(kind) in (list, dict):
            # A TOML value, e.g. tools.mcp=[{command = ["mcp-server-time"]}]; a list of strings may be a,b,c.
            if kind == list[str] and not value.startswith("["):
                return _names(value)
            return tomllib.loads(f"value = {value}")["value"]
        return kind(value)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--set {section}.{field}={value!r}: not a {type_name(kind)}") from exc


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]
