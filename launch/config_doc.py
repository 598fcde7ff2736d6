"""The documented TOML of every default, written from the settings dataclasses themselves.

`rocky-relay config` prints it; `launch/defaults.toml` is a copy a test keeps in
step, so the documentation of a setting lives in one place: the docstring under
its field.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from launch.config import ADDRESS_ENV, SECTIONS, default_config

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")

HEADER = f"""\
# Rocky Relay: every setting with its default. Copy what you change into ./rocky-relay.toml
# (or pass --config FILE); anything left out keeps the value below. One-off changes go on the
# command line: rocky-relay --set llm.max_tokens=32 --set tts.backend=espeak talk
# The bus address can also come from the environment: {ADDRESS_ENV}=host[:port].
# This file is generated from the settings classes: rocky-relay config > my.toml
"""

SECTION_NOTES = {
    "bus": "Where the bus proxy listens: publishers connect to pub, subscribers to sub.",
    "security": ("CURVE keys for a bus that leaves this machine (see `rocky-relay keys`): keys_dir is the key "
                 "store, name this satellite's key in it (empty on the server). Empty keys_dir: no CURVE, "
                 "which only loopback and ipc:// addresses allow."),
    "sets": 'Actor sets for `rocky-relay launch SET` / `talk --actors SET`; "proxy" runs the bus proxy.',
}


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (empty where there is none)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = ""
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                text = str(after.value.value)
            docs[node.target.id] = " ".join(text.split())
    return docs


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON-compatible for these values
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: one entry of a list of tables, such as [[tools.mcp]]
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _comment(text: str, width: int = 100) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line] if line != "#" else lines


def documented_defaults() -> str:
    config = default_config().to_dict()
    out = [HEADER]
    for section in ("bus", "security", "sets"):
        out += ["", *_comment(SECTION_NOTES[section]), f"[{section}]"]
        out += [f"{key} = {toml_value(value)}" for key, value in config[section].items()]
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        out += ["", f"[{section}]"]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            out[-1:-1] = _comment(cls.__doc__)
        for key, value in config[section].items():
            out += [*_comment(docs.get(key) or key), f"{key} = {toml_value(value)}"]
    return "\n".join(out) + "\n"


def cmd_config(args: Any) -> int:
    sys.stdout.write(documented_defaults())
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="print every setting with its default and what it does (TOML)")
    parser.set_defaults(func=cmd_config)


if __name__ == "__main__":  # python -m launch.config_doc > launch/defaults.toml
    sys.stdout.write(documented_defaults())
