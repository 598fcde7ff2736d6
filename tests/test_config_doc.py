"""The documented defaults file: complete, current, and loadable as a config."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from launch.config import SECTIONS, default_config, load_config
from launch.config_doc import DEFAULTS_FILE, documented_defaults, field_docs


def test_defaults_file_is_generated_from_the_settings_and_current() -> None:
    assert DEFAULTS_FILE.read_text() == documented_defaults(), (
        "launch/defaults.toml is stale: python -m launch.config_doc > launch/defaults.toml")


def test_defaults_file_holds_exactly_every_default() -> None:
    with open(DEFAULTS_FILE, "rb") as f:
        parsed = tomllib.load(f)
    assert parsed == default_config().to_dict()


def test_every_setting_is_documented() -> None:
    text = DEFAULTS_FILE.read_text().splitlines()
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        for key in default_config().to_dict()[section]:
            line = next(i for i, ln in enumerate(text) if ln.startswith(f"{key} = ")
                        and f"[{section}]" in _section_of(text, i))
            assert text[line - 1].startswith("#"), f"{section}.{key} has no comment above it"
            assert docs.get(key), f"{section}.{key} has no docstring in {cls.__name__}"


def _section_of(lines: list[str], index: int) -> str:
    return next(ln for ln in reversed(lines[:index]) if ln.startswith("["))


def test_defaults_file_loads_as_a_config(tmp_path: Path) -> None:
    assert load_config(DEFAULTS_FILE) == default_config()


def test_config_command_prints_it() -> None:
    out = subprocess.run([sys.executable, "-m", "launch.cli", "config"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out == DEFAULTS_FILE.read_text()
