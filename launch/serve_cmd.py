"""`rocky-relay serve`: the actor set as a long-lived service that every `talk`, `say` and `tap` attaches to.

It refuses to start beside a set that already serves the bus (clients would reach two of each actor), prints
which models are still loading and the start-up time, and stops cleanly on SIGTERM or Ctrl-C. `serve
--install-unit` writes a systemd user unit that runs it at login (a desktop, or a LAN server with lingering
on), the way `pi/install.sh` installs the Pi's: the config goes by file path, never secrets on the command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.attach import find_running, load_command_config, start_with_progress, wanted_roles
from launch.config import actor_set, bus_address

if TYPE_CHECKING:
    from launch.config import Config

UNIT_NAME = "rocky-relay.service"


class StopAsked(Exception):
    """SIGTERM or SIGINT while the set was still starting."""


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run an actor set as a service until stopped; talk, say and tap use it")
    serve.add_argument("set_name", nargs="?", default="local", metavar="SET",
                       help="local (default), server, typed or one from the config")
    serve.add_argument("--install-unit", action="store_true",
                       help="write a systemd user unit that runs this serve (~/.config/systemd/user/) and say "
                            "how to enable it; starts nothing")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.install_unit:
        return install_unit(args)
    config = load_command_config(args)
    return serve(config, args.set_name, "serve")


def serve(config: Config, set_name: str, command: str) -> int:
    """Run `set_name` until SIGTERM/SIGINT; 0 on a clean stop (also one asked for while starting)."""
    from launch.supervisor import Supervisor

    names = actor_set(config, set_name)
    address = bus_address(config)
    if "proxy" in names and (running := find_running(config, wanted_roles(config, set_name))) is not None:
        print(f"rocky-relay {command}: a set already serves {address.sub_addr} ({', '.join(sorted(running.readies))}"
              "): talk, say and tap use it as it is; stop it first to serve another", file=sys.stderr)
        return 2
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if starting:  # interrupt the wait for Ready: the `finally` below stops what was spawned
            raise StopAsked(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(config, names)
    try:
        print(f"starting the {set_name!r} set: {', '.join(names)}", file=sys.stderr)
        start_with_progress(supervisor)
        starting = False
        print(f"actor set {set_name!r} ready on {address.sub_addr}; `rocky-relay talk` and `say` use it; "
              f"Ctrl-C or SIGTERM stops it; CPU {supervisor.priority_note}", file=sys.stderr)
        stop.wait()
    except StopAsked as asked:
        print(f"rocky-relay {command}: {asked} while starting: stopping", file=sys.stderr)
    finally:
        starting = False
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"actor set {set_name!r} stopped", file=sys.stderr)
    return 0


def unit_dir() -> Path:
    """Where systemd looks for a user's own units ($XDG_CONFIG_HOME/systemd/user)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def relay_command() -> list[str]:
    """The command that runs rocky-relay from this installation: the venv's script beside its python (not the
    resolved python: that would leave the venv), else the module through this python."""
    script = Path(sys.executable).with_name("rocky-relay")
    return [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "launch.cli"]


def unit_text(exec_start: list[str], workdir: Path, set_name: str) -> str:
    return f"""\
# Rocky Relay as a systemd user service, written by `rocky-relay serve --install-unit`.
# talk, say and tap find this set on the bus and use it. Logs: journalctl --user -u rocky-relay (the launcher),
# {workdir}/logs/actors/*.log (each actor). Secrets (ROCKY_RELAY_LLM_API_KEY, ...) belong in the config file or
# an EnvironmentFile= of mode 0600, never on the command line below.
[Unit]
Description=Rocky Relay voice assistant (actor set {set_name}): talk, say and tap attach to it
After=pipewire-pulse.service pulseaudio.service sound.target

[Service]
Type=simple
WorkingDirectory={workdir}
Environment=PYTHONUNBUFFERED=1
ExecStart={shlex.join(exec_start)}
Restart=on-failure
RestartSec=5
# A turn outranks the desktop's background work: a user unit cannot lower its nice (server.priority then
# says "not set"), but a cgroup weight it may set, where the user manager delegates the cpu controller.
CPUWeight=1000
# Exit 2 is a start that would fail the same way again (a config, a model, a set already serving the bus):
# fix it, then `systemctl --user restart rocky-relay`.
RestartPreventExitStatus=2
# SIGTERM to the launcher only: it stops its actors in order; whatever is left after TimeoutStopSec is killed.
KillMode=mixed
TimeoutStopSec=20

[Install]
WantedBy=default.target
"""


def install_unit(args: argparse.Namespace) -> int:
    """Write the unit for `serve SET` with this config; starts and enables nothing."""
    if args.set:
        print("rocky-relay serve --install-unit: --set is not written into the unit (a setting on a command line "
              "is visible to every user, and may be a secret): put those settings in a config file and pass "
              "--config FILE", file=sys.stderr)
        return 2
    config_path = args.config or ("rocky-relay.toml" if Path("rocky-relay.toml").is_file() else None)
    load_command_config(args, secure=False)  # a config that does not load must not become a unit that fails
    command = relay_command()
    if config_path is not None:
        command += ["--config", str(Path(config_path).resolve())]
    command += ["serve", args.set_name]
    target = unit_dir() / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(unit_text(command, Path.cwd().resolve(), args.set_name), encoding="utf-8")
    print(f"wrote {target}\nenable and start it with:\n"
          "    systemctl --user daemon-reload && systemctl --user enable --now rocky-relay\n"
          "follow it with: journalctl --user -fu rocky-relay\n"
          "on a server nobody logs in to, also: loginctl enable-linger $USER (it then starts at boot)")
    return 0
