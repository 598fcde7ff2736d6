"""`rocky-relay talk` in a real terminal: tmux types the keys, PulseAudio carries the voice.

The command runs in a detached tmux session (a private tmux server on a socket
in the test's temp dir, no user config), with the mic and player on the
private PulseAudio's devices. A key (no Enter) starts the turn, the test speaks the
question into the mic sink, the key again ends it, the prompt shows the turn's state
and the reply shows before the next prompt; a key while Rocky thinks is a barge-in;
`q` alone quits, and no actor process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus.handshake import prove_path, wait_for_actors
from bus.messages import AudioFrame, Transcript
from bus.sockets import BusAddress, BusClient
from launch.config import DEFAULT_SETS
from tests.audio_stack import AudioStack, private_pulseaudio, require_tools
from tests.helpers import processes_mentioning

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "launch" / "samples" / "prompt-3s.wav"
RELAY = ROOT / ".venv" / "bin" / "rocky-relay"
SESSION = "talk"
EXITED = "talk exited with"
POLL_S = 0.2
pytestmark = pytest.mark.models


@dataclass
class Terminal:
    """A private tmux server running one command in a detached session."""

    socket: Path
    env: dict[str, str]
    server_pid: int = 0

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], env=self.env, capture_output=True,
                              text=True, timeout=10, check=True)
        return done.stdout

    def screen(self) -> str:
        """Everything the command printed (scrollback included), wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", SESSION)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", SESSION, *keys)

    def wait_for(self, ready: Callable[[str], bool], what: str, timeout_s: float) -> str:
        """Poll the screen until `ready(screen)`; fail with the screen when it never is."""
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if ready(screen):
                return screen
            if EXITED in screen:  # the command is gone: waiting longer cannot help
                raise AssertionError(f"talk ended before the {what}; the terminal shows:\n{screen}")
            time.sleep(POLL_S)  # a terminal has no "changed" event to wait on: poll it, within the deadline
        raise AssertionError(f"no {what} after {timeout_s:g} s; the terminal shows:\n{screen}")

    def wait_exit(self, timeout_s: float) -> int:
        """The command's exit status, as the shell around it printed it."""
        screen = self.wait_for(lambda s: EXITED in s, "exit", timeout_s)
        return int(screen.split(EXITED, 1)[1].split()[0])

    def leftovers(self, folder: Path) -> list[int]:
        """Processes still naming this test's folder (talk by its bus, actors by their config file), other than
        the tmux server (its argv holds the command)."""
        return [pid for pid in processes_mentioning(str(folder)) if pid != self.server_pid]


@pytest.fixture
def audio() -> Iterator[AudioStack]:
    require_tools("tmux")
    with private_pulseaudio() as stack:
        yield stack


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rr-tmux-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def terminal(audio: AudioStack, folder: Path) -> Iterator[Terminal]:
    """`rocky-relay talk` on the private PulseAudio, in tmux; the tmux server and every leftover killed after."""
    assert RELAY.is_file(), f"{RELAY} is missing: run ./setup.sh"
    env = {k: v for k, v in audio.full_env().items() if k not in ("TMUX", "TMUX_PANE")}
    term = Terminal(folder / "tmux.sock", env)
    command = [str(RELAY), "--set", f"bus.pub=ipc://{folder}/pub", "--set", f"bus.sub=ipc://{folder}/sub",
               "--set", "mic.backend=sounddevice", "--set", "mic.device=mic_in",
               "--set", "player.backend=sounddevice", "--set", "player.device=relay_out",
               "--set", f"logger.path={folder}/turns.jsonl", "talk"]
    # -f /dev/null: no user tmux.conf; remain-on-exit keeps the screen readable after the command ends. The
    # shell prints the exit status: tmux's own #{pane_dead_status} stayed empty in one run of three here.
    subprocess.run(["tmux", "-S", str(term.socket), "-f", "/dev/null", "start-server", ";",
                    "set-option", "-g", "remain-on-exit", "on", ";",
                    "new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50", "-c", str(folder),
                    f'{shlex.join(command)}; echo "{EXITED} $?"'], env=env, check=True, timeout=10, capture_output=True)
    term.server_pid = int(term.tmux("display-message", "-p", "#{pid}"))
    try:
        yield term
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            term.tmux("kill-server")  # SIGHUP to talk; its actors follow it (PR_SET_PDEATHSIG)
        for pid in processes_mentioning(str(folder)):  # only what a failed test left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def frames_until(client: BusClient, done: Callable[[AudioFrame], bool], timeout_s: float) -> AudioFrame:
    """Mic frames as they arrive, until one satisfies `done`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, AudioFrame) and done(env.msg):
            return env.msg
    raise TimeoutError(f"no matching mic frame in {timeout_s:g} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def current_line(screen: str) -> str:
    """The prompt: the last line the terminal shows (talk rewrites it in place)."""
    lines = [line for line in screen.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def speak_turn(terminal: Terminal, client: BusClient, audio: AudioStack, key: str) -> None:
    """Press `key`, speak the prompt into the mic, release with `key` once the mic has carried all of it."""
    pressed_at = time.time()  # frames of an earlier turn may still wait in the socket: not these
    terminal.keys(key)  # press
    first = frames_until(client, lambda f: f.ts >= pressed_at, timeout_s=15)  # the mic is open: speech is heard
    terminal.wait_for(lambda s: current_line(s).startswith("[listening]"), "listening prompt", timeout_s=10)
    audio.play(PROMPT, "mic_sink")
    release_at = time.time() + 0.5
    frames_until(client, lambda f: f.turn == first.turn and f.ts >= release_at, timeout_s=5)
    terminal.keys(key)  # release


def test_push_to_talk_in_a_terminal(terminal: Terminal, audio: AudioStack, folder: Path) -> None:
    """Three turns in one terminal: one answered (the prompt shows each state, and the record comes before the
    next ready prompt), one cut by a key while Rocky thinks (a barge-in, shown as one, its record before the
    next listening prompt), one of silence (one error line); another session's words never show; q alone quits."""
    terminal.wait_for(lambda s: current_line(s).startswith("[ready]"), "ready prompt", timeout_s=180)
    client = BusClient(BusAddress(pub_addr=f"ipc://{folder}/pub", sub_addr=f"ipc://{folder}/sub"),
                       ("audio.in",), name="test-ear")
    try:
        prove_path(client)
        actors = {name for name in DEFAULT_SETS["local"] if name != "proxy"}
        pids = [ready.pid for ready in wait_for_actors(client, actors, timeout_s=120).values()]
        client.publish(Transcript(session="kitchen", turn=1, text="ANOTHER SESSION"))  # not this client's

        speak_turn(terminal, client, audio, "Enter")
        prompts: set[str] = set()

        def answered(screen: str) -> bool:
            prompt = current_line(screen).split("]")[0] + "]"
            prompts.add(prompt)
            assert prompt != "[ready]" or "status:" in screen, f"ready again before the record:\n{screen}"
            return "status:" in screen and prompt == "[ready]"

        screen = terminal.wait_for(answered, "turn record and ready prompt", timeout_s=120)
        lines = screen.splitlines()
        heard = next(line for line in lines if line.startswith("you:"))
        said = next(line for line in lines if line.startswith("rocky:"))
        assert "planet" in heard.lower(), screen
        assert said.removeprefix("rocky:").strip() not in ("", "(nothing)"), screen
        assert "status: ok" in screen and "release_to_first_audio_ms" in screen, screen
        # The state between release and reply was shown: polled, so seen when it lasted a few polls (with the
        # settled partial reused and the reply begun before the release it can be shorter than one poll).
        waited = re.search(r"release_to_first_audio_ms\s+([\d.]+)", screen)
        assert waited, screen
        assert "[thinking]" in prompts or float(waited.group(1)) < 3000 * POLL_S, (prompts, waited.group(1))

        speak_turn(terminal, client, audio, "Space")
        terminal.wait_for(lambda s: current_line(s).startswith(("[thinking]", "[speaking]")), "thinking prompt",
                          timeout_s=60)
        terminal.keys("x")  # any key
        screen = terminal.wait_for(lambda s: current_line(s).startswith("[listening]"), "listening after barge-in",
                                   timeout_s=30)
        after_first = screen.split("status: ok", 1)[1]
        assert "barge-in" in after_first, screen
        assert after_first.index("barge-in") < after_first.index("status: interrupted"), screen
    finally:
        client.close()
    terminal.keys("Space")  # send the silence the mic heard since the barge-in
    screen = terminal.wait_for(lambda s: s.count("status:") == 3 and current_line(s).startswith("[ready]"),
                               "third turn's record", timeout_s=90)
    assert screen.count("error:") == screen.count("status: error"), screen  # one error line per failure
    assert "ANOTHER SESSION" not in screen, screen

    terminal.keys("q")  # a single key: no Enter
    assert terminal.wait_exit(timeout_s=30) == 0, terminal.screen()
    assert len(pids) == len(actors) and not [pid for pid in pids if alive(pid)], "actor processes outlived talk"
    assert not terminal.leftovers(folder), "a process of this talk (proxy, actor) was left"
