"""Entry points given bad input: each is a clear error at start, never a traceback, a hang or a late crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch.config import ConfigError, load_config
from tests.helpers import processes_mentioning

ROOT = Path(__file__).resolve().parents[1]
CHECK = ("launch", "--check", "typed")
"""A command that reads the config and starts nothing."""


def relay(workdir: Path, *argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """`rocky-relay ARGV` from `workdir`, whose rocky-relay.toml (if any) it reads, on a bus of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bus = [f"--set=bus.pub=ipc://{workdir}/pub", f"--set=bus.sub=ipc://{workdir}/sub"]
    return subprocess.run([sys.executable, "-m", "launch.cli", *bus, *argv], capture_output=True, text=True,
                          timeout=timeout_s, cwd=workdir, env=env)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in result.stderr, result.stderr[-2000:]


def test_say_with_more_text_than_the_bus_carries_is_refused_before_starting(tmp_path: Path) -> None:
    words = ["x" * 100_000] * 3  # one argument may hold at most 128 KiB (MAX_ARG_STRLEN)
    refused(relay(tmp_path, "say", *words), "too long", "300002 bytes")
    assert not processes_mentioning(str(tmp_path))


def test_a_binary_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rocky-relay.toml").write_bytes(bytes(range(256)) * 4)
    refused(relay(tmp_path, *CHECK), "rocky-relay.toml", "not UTF-8")


def test_a_config_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    refused(relay(tmp_path, "--config", "/dev/zero", *CHECK, timeout_s=30), "/dev/zero", "not a regular file")
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    refused(relay(tmp_path, "--config", str(fifo), *CHECK, timeout_s=30), "not a regular file")


def test_a_huge_config_file_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "big.toml", "w") as f:
        f.write("# padding\n" * 200_000)
    refused(relay(tmp_path, "--config", str(tmp_path / "big.toml"), *CHECK), "larger than 1 MiB")


def test_talk_from_a_fifo_is_refused_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "question.wav"
    os.mkfifo(fifo)
    refused(relay(tmp_path, "talk", "--input", str(fifo), timeout_s=30), "question.wav", "not a regular file")
    assert not processes_mentioning(str(tmp_path))


@pytest.mark.parametrize("argv", [["talk", "--attach", "--input", "X.wav"], ["talk", "--attach", "--output", "r.wav"],
                                  ["say", "--attach", "--output", "r.wav", "hi"]])
def test_attach_refuses_files_the_running_set_would_ignore(tmp_path: Path, argv: list[str]) -> None:
    option = argv[2]
    refused(relay(tmp_path, *argv), f"{option} would be ignored with --attach")


@pytest.mark.parametrize(("setting", "words"), [
    ("llm.max_tokens=-5", "llm.max_tokens = -5: must be at least 1"),
    ("llm.temperature=nan", "llm.temperature = nan: must be a finite number"),
    ("player.block_ms=0", "player.block_ms = 0.0: must be above 0"),
    ("llm.top_p=1.5", "llm.top_p = 1.5: must be above 0 and at most 1"),
    ("logger.turn_timeout_s=0", "logger.turn_timeout_s = 0.0: must be above 0"),
    ("satellite.link_timeout_s=inf", "must be a finite number"),
    ("button.debounce_ms=-1", "button.debounce_ms = -1.0: must be at least 0"),
])
def test_numeric_settings_out_of_range_are_refused(setting: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [setting])
    assert words in str(caught.value)


def test_a_nan_in_a_config_file_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[llm]\ntemperature = nan\n")
    with pytest.raises(ConfigError, match=r"llm\.temperature = nan"):
        load_config(tmp_path / "c.toml")


@pytest.mark.parametrize("template", ["{sesion}-{turn}.wav", "{0}.wav", "reply-{turn.wav", "{turn.real.x}.wav"])
def test_a_player_path_template_that_cannot_be_filled_is_refused_at_start(template: str) -> None:
    with pytest.raises(ConfigError, match=r"player\.path") as caught:
        load_config(None, [f"player.path={template}"])
    assert "{session}, {turn}" in str(caught.value)


def test_the_defaults_and_good_values_pass() -> None:
    config = load_config(None, ["llm.temperature=0", "player.path=out/{session}/{turn}.wav", "llm.seed=-1"])
    assert config.section("llm").temperature == 0.0
