"""Real turns through the `pi` set that pi/install.sh installed in a chroot, against a `server` set on this host.

    ROOTFS=/tmp/rr-pi-root.X python -m tests.pi_chroot_turns    # what `pi/check_install.sh --then` runs

The server set (proxy, logger, vad, stt `fixed`, llm `echo`, persona, tts `tone`: the models are the server's
business, not the Pi's) listens on 127.0.0.1 with CURVE keys; `keys add pi` makes the Pi's bundle and root
installs it in the chroot with `keys install`, as pi/README.md says. The service user then runs
`launch pi` there from /etc/rocky-relay/edge.toml with its [security] lines uncommented, its mic and player on
WAV files and its button and LED on fake pins (there is no Pi). Spoken turns are pressed from here with the
Pi's key (the emulated mic plays the bundled question, the emulated player writes the reply); a typed turn is
`rocky-relay say --attach` run in the chroot as the service user. Exit 0 when every turn was ok; every process
and file it made is gone at the end, failed or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from bus.keys import add_client, init_store, install_bundle
from launch.config import bus_address, load_config
from launch.turns import TurnDriver, format_record
from pi.measure_edge import _free_port_pair
from tests.netns import LineReader

SPOKEN_TURNS = 2
SERVICE = "rocky-relay"
PI = "pi"
"""The satellite's key name, so its session."""
RELEASE = "/opt/rocky-relay"
STATE = "/var/lib/rocky-relay"
EDGE_OVERRIDES = ["mic.backend=wav", f"mic.path={RELEASE}/src/launch/samples/prompt-3s.wav", "mic.realtime=true",
                  "player.backend=wav", f"player.path={STATE}/replies/{{session}}-{{turn}}.wav",
                  "button.backend=fake", "leds.backend=fake"]


def in_chroot(root: Path, *argv: str, user: bool = False) -> list[str]:
    """ARGV in the chroot with a clean environment; as the service user, from its state folder, with `user`."""
    env = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1", f"HOME={STATE}"]
    if user:  # setpriv execs (su would fork and setsid): one process to signal, and the unit's user and groups
        command = " ".join(shlex.quote(a) for a in argv)
        argv = ("setpriv", f"--reuid={SERVICE}", f"--regid={SERVICE}", "--init-groups", "sh", "-c",
                f"cd {STATE} && exec {command}")
    return ["chroot", str(root), *env, *argv]


def edge_config(root: Path, port: int) -> None:
    """Uncomment [security] in the installed edge.toml as a user does, and point it at this run's ports."""
    path = root / "etc" / "rocky-relay" / "edge.toml"
    text = re.sub(r"^# (\[security\]|keys_dir = .*)$", r"\1", path.read_text(), flags=re.M)
    text = text.replace(":7750", f":{port}").replace(":7751", f":{port + 1}")
    assert "\n[security]\nkeys_dir = \"/etc/rocky-relay/keys\"" in text, "edge.toml's [security] lines moved"
    path.write_text(text)


def stop(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    """SIGTERM to its process group (a launcher stops its actors in order), SIGKILL to what is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def stop_leftovers(folder: Path) -> None:
    """SIGKILL whatever still runs from `folder`: a launcher's actors run in its working directory, and one
    killed before it could stop them leaves them behind."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                os.kill(int(entry.name), signal.SIGKILL)


def start(argv: list[str], cwd: Path, ready_s: float, what: str) -> tuple[subprocess.Popen[str], float]:
    """A launcher in its own process group, once it says "ready on"; the seconds that took."""
    began = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    reader = LineReader(proc.stderr)
    try:
        while "ready on" not in reader.readline(max(0.1, began + ready_s - time.monotonic())):
            pass
    except (TimeoutError, EOFError) as exc:
        stop(proc)
        raise RuntimeError(f"{what} did not start: {exc}") from None
    return proc, time.monotonic() - began


def reply_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return float(w.getnframes() / w.getframerate())


def turns(root: Path, work: Path) -> list[dict[str, Any]]:
    keys, port = work / "server-keys", _free_port_pair()
    init_store(keys)
    bundle = add_client(keys, PI)
    turns_file = work / "turns.jsonl"
    bus = [f"bus.pub=tcp://127.0.0.1:{port}", f"bus.sub=tcp://127.0.0.1:{port + 1}"]
    server_conf = work / "server.toml"
    server_conf.write_text("\n".join([
        f'[bus]\npub = "tcp://127.0.0.1:{port}"\nsub = "tcp://127.0.0.1:{port + 1}"',
        f'[security]\nkeys_dir = "{keys}"', f'[logger]\npath = "{turns_file}"',
        '[stt]\nbackend = "fixed"\nfixed_text = "hello rocky what do you build"',
        '[llm]\nbackend = "echo"', '[tts]\nbackend = "tone"', ""]))
    server, took = start([sys.executable, "-m", "launch.cli", "--config", str(server_conf), "launch", "server"],
                         work, 180, "the server set")
    print(f"pi_chroot_turns: server set ready on 127.0.0.1:{port + 1} (CURVE) in {took:.1f} s", flush=True)
    try:
        shutil.copy(bundle, root / "root" / "pi-keys.tar.gz")
        subprocess.run(in_chroot(root, f"{RELEASE}/.venv/bin/rocky-relay", "keys", "--dir", "/etc/rocky-relay/keys",
                                 "install", "/root/pi-keys.tar.gz"), check=True, timeout=300)
        edge_config(root, port)
        # What systemd's StateDirectory= makes for the unit (there is no systemd in a chroot).
        subprocess.run(in_chroot(root, "install", "-d", "-o", SERVICE, "-g", SERVICE, "-m", "750", STATE),
                       check=True, timeout=60)
        overrides = [a for o in EDGE_OVERRIDES for a in ("--set", o)]
        edge, took = start(in_chroot(root, f"{RELEASE}/.venv/bin/rocky-relay", "--config", "/etc/rocky-relay/edge.toml",
                                     *overrides, "launch", "pi", user=True), work, 300, "the pi set (emulated)")
        print(f"pi_chroot_turns: pi set ready in the chroot in {took:.1f} s, as user {SERVICE}", flush=True)
        try:
            return drive(root, work, bundle, bus, turns_file)
        finally:
            stop(edge)
    finally:
        stop(server)
        stop_leftovers(work)


def drive(root: Path, work: Path, bundle: Path, bus: list[str], turns_file: Path) -> list[dict[str, Any]]:
    """The spoken turns (pressed from here with the Pi's key), then one typed turn from the chroot; the records."""
    own_keys = work / "pi-keys"
    install_bundle(bundle, own_keys)
    driver = TurnDriver(bus_address(load_config(None, [*bus, f"security.keys_dir={own_keys}"])), session=PI)
    records = []
    try:
        for _ in range(SPOKEN_TURNS):
            record = driver.spoken_turn(timeout_s=180)
            reply = root / STATE.lstrip("/") / "replies" / f"{PI}-{record['turn']}.wav"
            print(f"pi_chroot_turns: spoken turn: {format_record(record)}", flush=True)
            if reply.is_file():
                print(f"pi_chroot_turns: the emulated player wrote {reply.name} ({reply_seconds(reply):.2f} s)")
            else:
                record = {**record, "status": "no reply WAV", "missing": str(reply)}
            records.append(record)
    finally:
        driver.close()
    typed = subprocess.run(in_chroot(root, f"{RELEASE}/.venv/bin/rocky-relay", "--config", "/etc/rocky-relay/edge.toml",
                                     "say", "--attach",
                                     "--session", PI, "--json", "Hello Rocky, what do you build?", user=True),
                           capture_output=True, text=True, timeout=300)
    print(f"pi_chroot_turns: typed turn (say --attach in the chroot), exit {typed.returncode}:", flush=True)
    print("\n".join("    " + line for line in typed.stdout.splitlines()[:-1] + typed.stderr.splitlines()[-5:]))
    last = typed.stdout.strip().splitlines()[-1:] or ["{}"]
    try:
        records.append(json.loads(last[0]))
    except json.JSONDecodeError:
        records.append({"status": f"say exited {typed.returncode}"})
    logged = [json.loads(line) for line in turns_file.read_text().splitlines()] if turns_file.exists() else []
    print(f"pi_chroot_turns: the server's logger recorded {len(logged)} turns: "
          f"{[r.get('status') for r in logged]}")
    return records


def main() -> int:
    root = Path(os.environ.get("ROOTFS", ""))
    if not (root / "opt" / "rocky-relay" / ".venv").is_dir() or root == Path():
        print("pi_chroot_turns: ROOTFS must name a chroot where pi/install.sh ran", file=sys.stderr)
        return 2
    # check_install.sh's trap and the test's timeout stop this with SIGTERM: run the finally blocks then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="rr-pi-server."))
    try:
        records = turns(root, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bad = [r for r in records if r.get("status") != "ok"]
    print(f"pi_chroot_turns: {len(records) - len(bad)} of {len(records)} turns ok")
    return 1 if bad or not records else 0


if __name__ == "__main__":
    sys.exit(main())
