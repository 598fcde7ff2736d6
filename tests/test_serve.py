"""`rocky-relay serve` and clients that find it: a set started once, `say` using it without starting another,
`say` starting one (and saying so) when none runs, SIGTERM stopping it cleanly, and the systemd user unit."""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.sockets import BusAddress
from launch.attach import find_running, surely_free
from launch.config import DEFAULT_SETS, load_config
from tests.helpers import processes_mentioning
from tests.netns import LineReader

ROOT = Path(__file__).resolve().parents[1]
RELAY = ROOT / ".venv" / "bin" / "rocky-relay"
FAST = ["llm.backend=echo", "tts.backend=tone", "player.backend=wav"]
TYPED = DEFAULT_SETS["typed"]
STARTED = re.compile(r"started (\d+) actors in (\d+\.\d) s")


@pytest.fixture
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="rr-serve-"))
    try:
        yield folder
    finally:
        for pid in processes_mentioning(str(folder)):  # only what a failed test left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def settings(workdir: Path) -> list[str]:
    """A bus, turns file and reply file of the test's own, fast stand-in backends (the models are not the point)."""
    return [f"--set={s}" for s in (*FAST, f"bus.pub=ipc://{workdir}/pub", f"bus.sub=ipc://{workdir}/sub",
                                   f"player.path={workdir}/r-{{turn}}.wav", f"logger.path={workdir}/turns.jsonl")]


def relay(workdir: Path, *argv: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launch.cli", *settings(workdir), *argv], capture_output=True,
                          text=True, timeout=timeout_s, cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)})


def assert_all_gone(workdir: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the process table (it has no event to wait on), within a deadline
    assert not processes_mentioning(str(workdir)), "an actor outlived serve"


class Served:
    """`rocky-relay serve typed` as a child, its stderr read line by line in a thread."""

    def __init__(self, workdir: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "launch.cli", *settings(workdir), "serve", "typed"],
                                        cwd=workdir, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.stderr = LineReader(self.process.stderr)

    def wait_line(self, marker: str, timeout_s: float) -> str:
        return self.stderr.wait_for(marker, timeout_s)

    @property
    def seen(self) -> list[str]:
        return self.stderr.lines

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def test_say_uses_the_served_set_and_sigterm_stops_it_cleanly(workdir: Path) -> None:
    served = Served(workdir)
    try:
        started = STARTED.search(served.wait_line("started", timeout_s=90))
        assert started and int(started[1]) == len(TYPED) - 1, served.seen  # every actor but the proxy: with its time
        served.wait_line("ready on", timeout_s=10)
        before = sorted(processes_mentioning(str(workdir)))
        assert len(before) >= len(TYPED) + 1, before  # serve, its proxy and its actors

        said = relay(workdir, "say", "hello there")
        assert said.returncode == 0, said.stderr[-2000:]
        assert "using the set running at" in said.stderr and "no set runs" not in said.stderr, said.stderr
        assert "rocky: You said: hello there" in said.stdout and "status: ok" in said.stdout, said.stdout
        assert sorted(processes_mentioning(str(workdir))) == before  # nothing started, nothing stopped
        assert len((workdir / "turns.jsonl").read_text().splitlines()) == 1  # the served set's logger had it

        second = relay(workdir, "serve", "typed")
        assert second.returncode == 2 and "already serves" in second.stderr, second.stderr[-2000:]
        assert sorted(processes_mentioning(str(workdir))) == before

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
        served.wait_line("stopped", timeout_s=5)
        assert_all_gone(workdir)
    finally:
        served.stop()


def test_say_with_no_set_running_starts_one_says_so_and_leaves_nothing(workdir: Path) -> None:
    said = relay(workdir, "say", "hi")
    assert said.returncode == 0, said.stderr[-2000:]
    assert f"no set runs at ipc://{workdir}/sub: starting the 'typed' set for this say" in said.stderr, said.stderr
    assert "loading" in said.stderr and STARTED.search(said.stderr), said.stderr
    assert "status: ok" in said.stdout
    assert not processes_mentioning(str(workdir))
    attached = relay(workdir, "say", "--attach", "hi")  # nothing runs now: --attach says so and starts nothing
    assert attached.returncode == 2 and "no set answers" in attached.stderr and "rocky-relay serve" in attached.stderr
    tapped = relay(workdir, "tap", "--timeout", "0.2")  # tap waits for a set, and says it is waiting
    assert tapped.returncode == 0 and f"no set runs at ipc://{workdir}/sub yet" in tapped.stderr, tapped.stderr


def test_no_running_set_is_known_at_once_and_a_listener_that_is_no_proxy_is_none(workdir: Path) -> None:
    free = BusAddress(pub_addr=f"ipc://{workdir}/pub", sub_addr=f"ipc://{workdir}/sub")
    assert surely_free(free)
    config = load_config(None, [f"bus.pub={free.pub_addr}", f"bus.sub={free.sub_addr}"])
    assert find_running(config, {"llm"}) is None
    stranger = socket.socket(socket.AF_UNIX)  # something listens there, but it passes no ping back
    stranger.bind(str(workdir / "sub"))
    stranger.listen()
    try:
        assert not surely_free(free)
        assert find_running(config, {"llm"}, probe_s=0.5) is None
    finally:
        stranger.close()


def test_install_unit_writes_a_user_unit_that_runs_serve_with_the_config_file(workdir: Path) -> None:
    (workdir / "rocky-relay.toml").write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(workdir / "xdg")}
    done = subprocess.run([str(RELAY), "serve", "--install-unit"], capture_output=True, text=True, timeout=60,
                          cwd=workdir, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    unit = workdir / "xdg" / "systemd" / "user" / "rocky-relay.service"
    assert str(unit) in done.stdout and "systemctl --user enable --now rocky-relay" in done.stdout
    parsed = configparser.ConfigParser(interpolation=None, strict=True)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parsed.read(unit)
    service = parsed["Service"]
    command = shlex.split(service["ExecStart"])
    assert command == [str(RELAY), "--config", str(workdir / "rocky-relay.toml"), "serve", "local"]
    assert os.access(command[0], os.X_OK) and service["WorkingDirectory"] == str(workdir)
    assert service["KillMode"] == "mixed" and service["RestartPreventExitStatus"] == "2"
    assert parsed["Install"]["WantedBy"] == "default.target"
    if shutil.which("systemd-analyze"):  # system mode: a user manager needs a login session this box lacks
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr

    refused = subprocess.run([str(RELAY), "--set", "llm.api_key=sk-e1-never-in-a-unit", "serve", "--install-unit"],
                             capture_output=True, text=True, timeout=60, cwd=workdir, env=env)
    assert refused.returncode == 2 and "--set is not written into the unit" in refused.stderr
    assert "sk-e1-never-in-a-unit" not in unit.read_text()


def test_sigterm_while_the_set_is_still_loading_stops_it_cleanly(workdir: Path) -> None:
    served = Served(workdir)
    try:
        served.wait_line("loading", timeout_s=60)
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0, served.seen
        served.wait_line("SIGTERM while starting", timeout_s=5)
        assert_all_gone(workdir)
    finally:
        served.stop()
