"""A private PulseAudio server with null sinks, so tests play and record real audio without a sound card.

    with private_pulseaudio() as stack:           # skips the test when pulseaudio is missing
        env = stack.env                            # give this to every process that opens a device
        stack.play(wav, "mic_sink")                # the test "speaks" into the microphone

Two null sinks: `relay_sink` (the player plays here; its monitor is what a
listener hears) and `mic_sink` (the test plays questions here; its monitor is
the microphone). PortAudio sees them through ALSA pcms of the pulse plugin,
named in a private ALSA config: `relay_out` (plays into relay_sink),
`relay_monitor` (records relay_sink.monitor) and `mic_in` (records
mic_sink.monitor); plain `pulse` plays to relay_sink and records mic_sink.monitor.

How the server is kept private (nothing touches a user's own audio or config):
- the daemon runs in the foreground as our child (`--daemonize=no`), so teardown
  kills exactly that pid; no pid file (`--use-pid-file=no`), no idle exit, and
  `--disallow-exit` so no client can end it early;
- `-n` skips default.pa: only our modules load, among them a native-protocol
  socket in the temp dir with anonymous auth (no cookie to share);
- HOME, XDG_CONFIG_HOME, PULSE_RUNTIME_PATH and PULSE_STATE_PATH point into the
  temp dir, clients get PULSE_SERVER=unix:<that socket> and a client.conf with
  autospawn off, so a dead test server fails loudly instead of spawning another;
- root: pulseaudio warns "not intended to be run as root" but runs fine in
  per-user mode; `--system` is not needed (and would want the pulse user and
  the system socket path). `--realtime=no --high-priority=no` skip rtkit/D-Bus.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

SINKS = ("relay_sink", "mic_sink")
ALSA_PCMS = {"relay_out": "relay_sink", "relay_monitor": "relay_sink.monitor", "mic_in": "mic_sink.monitor"}
SYSTEM_ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
TOOLS = ("pulseaudio", "pactl", "paplay", "parecord")
DEBIAN_PACKAGE = {"pulseaudio": "pulseaudio", "pactl": "pulseaudio-utils", "paplay": "pulseaudio-utils",
                  "parecord": "pulseaudio-utils", "tmux": "tmux"}


@dataclass
class AudioStack:
    folder: Path
    server: subprocess.Popen[bytes]
    env: dict[str, str]
    """Only the variables to add to a process's environment to use this server."""
    recorders: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def pactl(self, *args: str, timeout_s: float = 10.0) -> str:
        done = subprocess.run(["pactl", *args], env=self.full_env(), capture_output=True, text=True,
                              timeout=timeout_s, check=True)
        return done.stdout

    def play(self, wav: Path, sink: str, timeout_s: float = 30.0) -> None:
        """Play `wav` into `sink` and return once the server has played it out (paplay drains)."""
        subprocess.run(["paplay", f"--device={sink}", str(wav)], env=self.full_env(), check=True,
                       timeout=timeout_s, capture_output=True)

    def start_recording(self, source: str, path: Path, rate: int = 16000) -> subprocess.Popen[bytes]:
        """Record `source` (e.g. relay_sink.monitor) as raw s16le mono into `path` until `stop_recording`."""
        proc = subprocess.Popen(
            ["parecord", f"--device={source}", "--raw", "--format=s16le", f"--rate={rate}", "--channels=1",
             str(path)], env=self.full_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.recorders.append(proc)
        return proc

    def stop_recording(self, proc: subprocess.Popen[bytes], path: Path) -> np.ndarray:
        """Stop a recorder (SIGINT flushes its file) and return what it recorded."""
        _end(proc, signal.SIGINT)
        return np.fromfile(path, dtype=np.int16) if path.exists() else np.zeros(0, dtype=np.int16)


def require_tools(*extra: str) -> None:
    """Skip the calling test, naming what is missing."""
    missing = [tool for tool in (*TOOLS, *extra) if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({DEBIAN_PACKAGE.get(tool, tool) for tool in missing}))
        pytest.skip(f"needs {', '.join(missing)} (Debian: apt-get install {packages})")
    if not SYSTEM_ALSA_CONF.is_file():
        pytest.skip(f"needs the ALSA config {SYSTEM_ALSA_CONF} (Debian: libasound2-data)")
    # Looked up, not loaded: importing sounddevice here would open this process's ALSA and pulse clients
    # before the private server exists.
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("needs PortAudio (Debian: apt-get install libportaudio2)")


def _end(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)


def _wait_until_up(stack: AudioStack, log: Path, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.server.poll() is not None:
            raise RuntimeError(f"pulseaudio exited with {stack.server.returncode}: {log.read_text()[-2000:]}")
        probe = subprocess.run(["pactl", "info"], env=stack.full_env(), capture_output=True, timeout=5)
        if probe.returncode == 0:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.server.wait(timeout=0.1)  # the poll interval; ends early if the server died
    raise TimeoutError(f"pulseaudio not answering after {timeout_s:g} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def private_pulseaudio() -> Iterator[AudioStack]:
    """A private PulseAudio server with `relay_sink` and `mic_sink`; killed, and its files removed, after."""
    require_tools()
    folder = Path(tempfile.mkdtemp(prefix="rr-pulse-"))
    socket = folder / "native"
    for sub in ("runtime", "state", "home", "config"):
        (folder / sub).mkdir(mode=0o700)
    (folder / "client.conf").write_text("autospawn = no\n")
    alsa = folder / "asound.conf"
    alsa.write_text("".join(f'pcm.{name} {{ type pulse; device "{dev}" }}\n' for name, dev in ALSA_PCMS.items()))
    env = {
        "PULSE_SERVER": f"unix:{socket}",
        "PULSE_CLIENTCONFIG": str(folder / "client.conf"),
        "PULSE_RUNTIME_PATH": str(folder / "runtime"),
        "PULSE_STATE_PATH": str(folder / "state"),
        # The system file first: it pulls in the pulse plugin's own config; ours only adds pcms.
        "ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{alsa}",
    }
    server_env = {**os.environ, **env, "HOME": str(folder / "home"), "XDG_CONFIG_HOME": str(folder / "config")}
    server_env.pop("PULSE_SERVER")  # the daemon must not think it is a client of itself
    args = ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
            "--realtime=no", "--high-priority=no", "--log-target=stderr",
            f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
            *(f"--load=module-null-sink sink_name={sink} rate=48000" for sink in SINKS)]
    log = folder / "pulseaudio.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(args, env=server_env, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=log_file, start_new_session=True)
    stack = AudioStack(folder=folder, server=server, env=env)
    try:
        _wait_until_up(stack, log)
        stack.pactl("set-default-sink", "relay_sink")
        stack.pactl("set-default-source", "mic_sink.monitor")
        yield stack
    finally:
        for proc in stack.recorders:
            _end(proc, signal.SIGINT)
        _end(server)
        shutil.rmtree(folder, ignore_errors=True)
