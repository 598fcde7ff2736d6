"""Entry point of one actor process: `python -m launch.actor_main NAME CONFIG_FILE` (`-`: JSON on stdin).

The supervisor starts every actor this way, the config in a private file: a
command line is readable by every user (/proc/PID/cmdline) and the config may
hold credentials. SIGTERM stops the actor cleanly;
SIGINT is ignored because Ctrl-C belongs to the supervisor, which stops the
whole set in order. A failure to start exits with code 2.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys

import structlog
import zmq

from actors.base import Actor
from actors.table import spec_of
from bus.endpoints import address_in_use
from bus.privacy import PRIVATE_UMASK, remember_config
from launch.config import Config, bus_address, replica_counts, settings_for
from launch.logsetup import configure_logging

EXIT_START_FAILED = 2


def build_actor(name: str, config: Config) -> Actor:
    """The actor called `name` (a replica: NAME-i), with its settings and place in the system."""
    spec = spec_of(name)
    if spec is None:
        raise ValueError(f"unknown actor {name!r}")
    _role, _, index = name.partition("-")
    actor = spec.actor_class()(settings_for(name, config))
    if spec.runs_on == "edge":  # with [satellite] session set, it serves only that session's turns
        actor.only_session = config.satellite.session
    if spec.watches_link:  # how long the other side may stay silent
        actor.watch_links(config.satellite.link_timeout_s)
    if index:
        actor.replica = (int(index), replica_counts(config)[spec.name])
        actor.name = name  # type: ignore[misc]  # Ready and logs name the replica
    actor.max_queued_turns = config.server.max_queued_turns
    return actor


MODEL_SETTING = {"stt": "stt.model", "llm": "llm.model", "tts": "tts.voice"}


def _model_hint(name: str, exc: Exception) -> str:
    """What to do when a model loader choked on a file (a missing one already says what to install)."""
    from models.registry import ModelNotFound

    setting = MODEL_SETTING.get(name.split("-")[0])
    if setting is None or isinstance(exc, ModelNotFound):
        return ""
    return (f" -- if the model file is damaged or incomplete: `rocky-relay models verify` checks it, "
            f"`rocky-relay models prepare` rebuilds the embedded ones, or set {setting} to another model")


def run_proxy_process(config: Config) -> int:
    from bus.proxy import run_proxy
    from bus.security import BusSecurityError

    # SIGTERM keeps its default action: the proxy holds no state worth a clean exit.
    address = bus_address(config)
    try:
        run_proxy(address, zmq.Context())
    except BusSecurityError as exc:
        structlog.get_logger("proxy").error("proxy_refused", error=str(exc))
        return EXIT_START_FAILED
    except zmq.ZMQError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Another set's proxy has the bus: joining it would double every turn. A start failure, not a retry.
        structlog.get_logger("proxy").error("proxy_refused", error=address_in_use(address))
        return EXIT_START_FAILED
    return 0


def read_config(source: str) -> Config:
    """The launch config from a file the supervisor wrote, or from stdin (`-`)."""
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: the config must be a JSON object")
    return Config.from_dict(data, source)


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)
    args = sys.argv[1:] if argv is None else argv
    name, config = args[0], read_config(args[1])
    remember_config(config.to_dict())
    configure_logging(json_output=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if name == "proxy":
        return run_proxy_process(config)
    actor = build_actor(name, config)

    def stop(*_: object) -> None:
        actor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        actor.run(bus_address(config))
    except Exception as exc:
        actor.log.error("actor_failed", error=f"{type(exc).__name__}: {exc}{_model_hint(name, exc)}")
        return EXIT_START_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
