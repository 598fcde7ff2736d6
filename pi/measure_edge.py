"""CPU and memory of each edge actor process while turns run: the Pi's budget, measured.

    .venv/bin/python -m pi.measure_edge [--seconds 30] [--mic wav|sounddevice] [--player wav|sounddevice]

Starts a stand-in server with the launcher (proxy, logger, vad, stt `fixed`,
llm `echo`, persona, tts `tone`: the models' cost belongs to the server, not
the edge), then the edge actors each in its own process, as the launcher runs
them: mic (the bundled 3 s question as a WAV, paced like a microphone, or a
real device), player, button and leds on fake pins. A thread in the button's
process presses the fake switch, holds it while the question is spoken,
releases it and waits for the turn to close, so the button's real debounce
and publish path runs. psutil samples each edge process once a second: CPU
in % of one core, RSS (all resident memory, shared libraries included) and
PSS (shared pages split between the processes using them: what the set adds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.table import default_sets

if TYPE_CHECKING:
    from launch.config import Config

EDGE = tuple(default_sets()["pi"])
SERVER = default_sets()["server"]
SAMPLE = Path(__file__).resolve().parents[1] / "launch" / "samples" / "prompt-3s.wav"
HOLD_S = 3.4
"""How long the scripted press lasts: the 3 s sample and a little silence after it."""


def _free_port_pair() -> int:
    """A port p with p+1 free too (the proxy binds both); a small race is fine for a script."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second, contextlib.suppress(OSError):
                second.bind(("127.0.0.1", port + 1))
                return port
    raise RuntimeError("no two neighbouring free TCP ports on 127.0.0.1")


def _config(tmp: Path, mic: str, player: str) -> Config:
    from launch.config import BusSettings, load_config
    from pi.button import GpioButtonSettings
    from pi.leds import LedSettings

    config = load_config(None, [
        "stt.backend=fixed", "stt.fixed_text=hello rocky what do you build", "llm.backend=echo",
        "tts.backend=tone", f"logger.path={tmp / 'turns.jsonl'}",
        f"mic.backend={mic}", f"mic.path={SAMPLE}", f"player.backend={player}",
        f"player.path={tmp / 'replies' / '{session}-{turn}.wav'}"])
    port = _free_port_pair()
    # TCP like the Pi's LAN link (not ipc), so the socket cost is the one the Pi pays.
    config.bus = BusSettings(pub=f"tcp://127.0.0.1:{port}", sub=f"tcp://127.0.0.1:{port + 1}")
    config.sections["button"] = GpioButtonSettings(backend="fake", session="pi")
    config.sections["leds"] = LedSettings(backend="fake", session="pi")
    return config


# --- child process: one edge actor ---------------------------------------------------------


def _press_loop(actor: Any, pins: Any, stop: threading.Event) -> None:
    """Play the user: press, hold while the question is spoken, release, wait for the answer."""
    if not actor.watcher_ready.wait(30):
        return
    pin = actor.settings.pin
    while not stop.wait(1.0):
        pins.set_input(pin, False)
        if stop.wait(HOLD_S):
            break
        pins.set_input(pin, True)
        deadline = time.monotonic() + 30.0
        while actor.turn_open and time.monotonic() < deadline and not stop.wait(0.05):
            pass


def child_main(name: str, config_file: str) -> int:
    from launch import actor_main

    if name not in ("button", "leds"):
        return actor_main.main([name, config_file])
    config = actor_main.read_config(config_file)
    from launch.config import bus_address
    from launch.logsetup import configure_logging
    from pi.button import GpioButtonActor, GpioButtonSettings
    from pi.leds import LedActor, LedSettings
    from pi.pins import FakePins

    configure_logging(json_output=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pins = FakePins()
    stop = threading.Event()
    actor: GpioButtonActor | LedActor
    if name == "button":
        actor = GpioButtonActor(config.of(GpioButtonSettings), pins=pins)
        threading.Thread(target=_press_loop, args=(actor, pins, stop), daemon=True).start()
    else:
        actor = LedActor(config.of(LedSettings), pins=pins)

    def on_term(*_: object) -> None:
        stop.set()
        actor.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        actor.run(bus_address(config))
    finally:
        stop.set()
    return 0


# --- parent: run, sample, report -----------------------------------------------------------


def _spawn(name: str, config: Config, log_dir: Path) -> subprocess.Popen[bytes]:
    from launch.orphans import die_with_parent  # the launcher's no-orphans guarantee, here too

    config_file = log_dir / ".config.json"  # never on the command line: other users can read that
    if not config_file.exists():
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config.to_dict(), f)
    with open(log_dir / f"{name}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pi.measure_edge", "--child", name, str(config_file)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                preexec_fn=die_with_parent(), cwd=Path(__file__).resolve().parents[1])


def _sample(procs: dict[str, Any], client: Any, seconds: float) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """CPU % and memory of each process once a second for `seconds`; the statuses of turns recorded meanwhile."""
    from bus.messages import TurnRecord

    stats: dict[str, dict[str, list[float]]] = {n: {"cpu": [], "rss": [], "pss": []} for n in procs}
    for proc in procs.values():
        proc.cpu_percent(None)  # primes the counter: the first real value covers the first interval
    statuses: list[str] = []
    end = time.monotonic() + seconds
    next_sample = time.monotonic() + 1.0
    while (now := time.monotonic()) < end:
        env = client.recv(timeout_ms=max(0.0, 1000 * (next_sample - now)))
        if env is not None and isinstance(env.msg, TurnRecord):
            statuses.append(str(env.msg.record.get("status")))
        if time.monotonic() >= next_sample:
            next_sample += 1.0
            for name, proc in procs.items():
                mem = proc.memory_full_info()
                stats[name]["cpu"].append(proc.cpu_percent(None))
                stats[name]["rss"].append(mem.rss / 2**20)
                stats[name]["pss"].append(getattr(mem, "pss", mem.uss) / 2**20)
    return stats, statuses


def format_table(stats: dict[str, dict[str, list[float]]]) -> str:
    lines = [f"{'actor':8s} {'cpu% mean':>9s} {'cpu% max':>9s} {'rss MiB':>8s} {'pss MiB':>8s}"]
    totals = [0.0, 0.0, 0.0, 0.0]
    for name, s in stats.items():
        row = [sum(s["cpu"]) / max(1, len(s["cpu"])), max(s["cpu"], default=0.0),
               max(s["rss"], default=0.0), max(s["pss"], default=0.0)]
        totals = [t + v for t, v in zip(totals, row, strict=True)]
        lines.append(f"{name:8s} {row[0]:9.1f} {row[1]:9.1f} {row[2]:8.1f} {row[3]:8.1f}")
    lines.append(f"{'total':8s} {totals[0]:9.1f} {totals[1]:9.1f} {totals[2]:8.1f} {totals[3]:8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pi.measure_edge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="sampling time (default 30)")
    parser.add_argument("--mic", choices=["wav", "sounddevice"], default="wav")
    parser.add_argument("--player", choices=["wav", "sounddevice"], default="wav")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "CONFIG_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child[0], args.child[1])
    try:
        import psutil
    except ImportError:
        print("measure_edge needs psutil: pip install psutil", file=sys.stderr)
        return 2
    from bus.handshake import prove_path, wait_for_actors
    from bus.messages import Shutdown
    from bus.sockets import BusClient
    from launch.config import bus_address
    from launch.supervisor import Supervisor

    tmp = Path(tempfile.mkdtemp(prefix="rr-edge-"))
    config = _config(tmp, args.mic, args.player)
    children: dict[str, subprocess.Popen[bytes]] = {}
    supervisor = Supervisor(config, SERVER, log_dir=tmp / "logs")
    client: BusClient | None = None
    measured = False
    try:
        supervisor.start()
        children = {name: _spawn(name, config, tmp / "logs") for name in EDGE}
        client = BusClient(bus_address(config), ("turn.record",), name="measure-edge")
        prove_path(client)
        wait_for_actors(client, set(EDGE), timeout_s=60)
        print(f"edge actors ready; sampling {args.seconds:g} s", file=sys.stderr)
        procs = {name: psutil.Process(child.pid) for name, child in children.items()}
        stats, statuses = _sample(procs, client, args.seconds)
        ok = statuses.count("ok")
        print(format_table(stats))
        print(f"turns recorded while sampling: {len(statuses)} ({ok} ok); CPU % is of one core, "
              f"{psutil.cpu_count()} cores here")
        measured = True
        return 0 if statuses else 1
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.publish(Shutdown(actors=list(EDGE), pids=[child.pid for child in children.values()]))
            client.close()
        for child in children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
        supervisor.stop()
        if measured:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp / 'logs'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
