"""Secrets stay secret and what a turn leaves on disk is private: real processes, a real failing turn."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.base import Actor
from audio.wav import WavSink
from bus.messages import Transcript, TurnError
from bus.privacy import redact, remember, remember_config
from bus.sockets import BusAddress
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver
from tests.helpers import of_type, run_actor

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-test-0123456789abcdef"
PASSWORD = "hunter2-swordfish"


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rr-privacy-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound but never listening: a connection to it is refused at once, and no one else can take it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_redact_masks_url_credentials_bearer_tokens_and_remembered_secrets() -> None:
    remember_config({"llm": {"api_key": API_KEY, "url": f"http://bob:{PASSWORD}@host:8080/v1"}})
    text = (f"llm server http://bob:{PASSWORD}@host:8080/v1 refused; key {API_KEY}; "
            f"Authorization: Bearer {API_KEY}; password alone: {PASSWORD}")
    masked = redact(text)
    assert API_KEY not in masked and PASSWORD not in masked and "bob:" not in masked
    assert "http://***@host:8080/v1" in masked
    assert redact("no secret here: tcp://127.0.0.1:7750") == "no secret here: tcp://127.0.0.1:7750"


class Failing(Actor):
    name = "failing"
    topics = ("stt.final",)

    def handle(self, env: object) -> None:
        raise ConnectionError(f"could not reach http://bob:{PASSWORD}@host/v1 with key {API_KEY}")


def test_an_error_text_on_the_bus_has_no_credentials(bus_address: BusAddress) -> None:
    remember(API_KEY)
    envs = run_actor(Failing(), bus_address, send=[Transcript(session="s", turn=7, text="hi")], expect=[TurnError])
    reason = of_type(envs, TurnError)[0].reason
    assert "could not reach http://***@host/v1" in reason
    assert PASSWORD not in reason and API_KEY not in reason


def test_no_actor_has_a_secret_on_its_command_line_nor_in_records_logs_or_the_bus(workdir: Path,
                                                                                   refused_port: int) -> None:
    config_file = workdir / "rocky-relay.toml"
    config_file.write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n'
                           f'[llm]\nbackend = "openai"\nurl = "http://bob:{PASSWORD}@127.0.0.1:{refused_port}/v1"\n'
                           f'api_key = "{API_KEY}"\n')
    config = load_config(config_file, ["tts.backend=tone", "player.backend=wav",
                                       f"player.path={workdir}/replies/{{turn}}.wav",
                                       f"logger.path={workdir}/logs/turns.jsonl"])
    seen: list[str] = []
    with Supervisor(config, config.sets["typed"], log_dir=workdir / "actors") as supervisor:
        supervisor.start(timeout_s=60)
        for name in supervisor.children:
            pid = supervisor.pid(name)
            assert pid is not None
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert API_KEY not in cmdline and PASSWORD not in cmdline, (name, cmdline)
        config_copies = list((workdir / "actors").glob(".config-*.json"))
        assert len(config_copies) == 1 and private(config_copies[0])
        driver = TurnDriver(bus_address(config), session="local", source="typed")
        try:
            record = driver.typed_turn("hello", timeout_s=60, on_event=lambda env: seen.append(repr(env.msg)))
        finally:
            driver.close()
    assert record["status"] == "error" and "127.0.0.1" in record["error"]["reason"], record
    assert not list((workdir / "actors").glob(".config-*.json")), "the config copy outlived the set"
    written = [workdir / "logs" / "turns.jsonl", workdir / "logs" / "turns.jsonl.journal",
               *(workdir / "actors").glob("*.log")]
    for path in written:
        assert private(path), f"{path} is {oct(path.stat().st_mode)}"
        text = path.read_bytes().decode("utf-8", "replace")
        assert API_KEY not in text and PASSWORD not in text, path
    for line in [repr(record), *seen]:
        assert API_KEY not in line and PASSWORD not in line, line


def test_reply_wavs_are_private_whatever_the_umask(workdir: Path) -> None:
    old = os.umask(0o022)
    try:
        (workdir / "old.wav").write_bytes(b"")
        os.chmod(workdir / "old.wav", 0o644)
        for name in ("new.wav", "old.wav"):
            with WavSink(workdir / name, 16000) as sink:
                sink.write(b"\0\0" * 160)
            assert private(workdir / name), name
    finally:
        os.umask(old)


def test_the_cli_makes_its_files_private(workdir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", "import os, launch.cli as c; "
                             "c.main(['config']); print(oct(os.umask(0)))"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip().endswith("0o77"), result.stdout[-200:]

