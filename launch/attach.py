"""The actor set a command drives: one already running (`rocky-relay serve`), found by itself, or one started.

`talk` and `say` look on the bus first. A local bind endpoint nobody listens on answers at once (no set
runs: nothing to wait for); otherwise a ping must come back through the proxy within `PROBE_S` and the
actors' `Ready` answers say which of the set are there. Only when no set runs is one started for the
command, and it says so, with a progress line of the models still loading and the start-up time.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bus.endpoints import endpoint_in_use
from bus.handshake import prove_path, wait_for_actors
from bus.messages import Ping, Ready
from bus.security import is_local_endpoint
from bus.sockets import BusAddress, BusClient
from launch.config import actor_set, bus_address, load_config

if TYPE_CHECKING:
    from launch.config import Config

DEFAULT_CONFIG = Path("rocky-relay.toml")
PROBE_S = 1.0
"""How long a proxy that listens may take to pass a ping back before the address counts as not served."""
ACTORS_S = 1.0
"""How long the actors of a running set may take to answer a ping (they answer between tokens, too)."""
LOADING_WAIT_S = 120.0
"""A running set whose actors have not all answered yet may still be loading its models: how long to wait."""
PROGRESS_EVERY_S = 0.25


def load_command_config(args: argparse.Namespace, extra: Sequence[str] = (), secure: bool = True) -> Config:
    """The config a command runs with: --config (or ./rocky-relay.toml), then `extra`, then --set."""
    from bus.privacy import remember_config
    from bus.security import require_security
    from launch.keys_cmd import bind_session_to_key

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    config = load_config(path, [*extra, *args.set])
    remember_config(config.to_dict())  # from here on, its credentials are masked in whatever is printed
    if secure:
        address = bus_address(config)
        require_security(address)  # a LAN bus without keys: say so before spawning anything
        bind_session_to_key(config, address.curve)
    return config


@dataclass(frozen=True)
class RunningSet:
    """A set found serving the bus: its actors' answers by name (a replica as NAME-i)."""

    address: BusAddress
    readies: dict[str, Ready]

    def roles(self) -> set[str]:
        return _roles(self.readies)


def surely_free(address: BusAddress) -> bool:
    """True when no proxy can be serving `address`: a bind endpoint of this machine nobody listens on."""
    for endpoint in (address.pub_addr, address.sub_addr):
        host = endpoint.partition("://")[2].rpartition(":")[0]
        on_this_machine = is_local_endpoint(endpoint) or host in ("*", "0.0.0.0")
        if not on_this_machine or endpoint_in_use(endpoint):
            return False
    return True


def find_running(config: Config, wanted: set[str], probe_s: float = PROBE_S) -> RunningSet | None:
    """The set serving the config's bus (None when nothing does), with whichever of `wanted` answered."""
    address = bus_address(config)
    if surely_free(address):
        return None
    client = BusClient(address, name="attach-probe")
    try:
        try:
            prove_path(client, timeout_s=probe_s)
        except TimeoutError:
            return None  # a listener that is no proxy of ours, or one that cannot pass our keys
        readies: dict[str, Ready] = {}
        with contextlib.suppress(TimeoutError):
            _wait_roles(client, wanted, ACTORS_S, readies)
        return RunningSet(address, readies)
    finally:
        client.close()


def _roles(readies: dict[str, Ready]) -> set[str]:
    return {name.split("-")[0] for name in readies}


def _wait_roles(client: BusClient, roles: set[str], timeout_s: float, found: dict[str, Ready]) -> None:
    """Ping until every role in `roles` answered `Ready` (any name counts: the running set may have replicas
    this config does not know of, NAME-i); the answers go into `found` as they come."""
    client.subscribe("ctl.ready")
    deadline = time.monotonic() + timeout_s
    while not roles <= _roles(found):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no answer from {', '.join(sorted(roles - _roles(found)))}")
        client.publish(Ping(nonce=random.randrange(1 << 30)))
        step_end = min(deadline, time.monotonic() + 0.2)
        while (left := step_end - time.monotonic()) > 0:
            env = client.recv(timeout_ms=left * 1000)
            if env is not None and isinstance(env.msg, Ready):
                found[env.msg.actor] = env.msg


def wanted_roles(config: Config, set_name: str, drop: Sequence[str] = ()) -> set[str]:
    return {name for name in actor_set(config, set_name) if name != "proxy" and name not in drop}


def wait_until_served(config: Config, running: RunningSet, wanted: set[str], command: str,
                      out: TextIO = sys.stderr) -> None:
    """A running set that lacks some of `wanted`: it may be loading them (a `serve` just started); wait, or
    raise TimeoutError naming what is missing and how to get it."""
    missing = wanted - running.roles()
    if not missing:
        return
    print(f"rocky-relay {command}: a set runs at {running.address.sub_addr} but {', '.join(sorted(missing))} "
          f"did not answer yet (still loading?): waiting up to {LOADING_WAIT_S:g} s", file=out)
    client = BusClient(running.address, name="attach-wait")
    try:
        prove_path(client, timeout_s=PROBE_S)
        with contextlib.suppress(TimeoutError):
            _wait_roles(client, wanted, LOADING_WAIT_S, running.readies)
    finally:
        client.close()
    if missing := wanted - running.roles():
        raise TimeoutError(f"the set running at {running.address.sub_addr} has no {', '.join(sorted(missing))}, "
                           f"which `{command}` needs: stop it and run `rocky-relay serve` with a set that has them "
                           "(`local` has every actor), or use other bus.pub / bus.sub for a set of this command's own")


def heard_by(client: BusClient, actors: set[str], timeout_s: float = 5.0) -> None:
    """Return once `actors` answered a ping from `client`. Their PUB sockets then hold every subscription the
    client made before (one pipe keeps the order), so nothing they publish for the client's turn (the logger's
    record above all) is dropped at their socket for want of it: a subscriber newer than a connected publisher
    lost its first message 12 times in 100 here. One that does not answer in time is the turn's to report."""
    with contextlib.suppress(TimeoutError):
        wait_for_actors(client, actors, timeout_s=timeout_s)


def start_with_progress(supervisor: Any, out: TextIO = sys.stderr) -> dict[str, Ready]:
    """`supervisor.start()`, with a line of the actors still loading (rewritten in place on a terminal) and
    the start-up time at the end."""
    names = sorted(n for n in supervisor.children if n != "proxy")
    began = time.monotonic()
    done = threading.Event()
    live = out.isatty()

    def report() -> None:
        shown: list[str] | None = None
        while not done.wait(PROGRESS_EVERY_S):  # a progress display's own pace, not a test's wait
            loading = [n for n in names if n not in supervisor.readies]
            if not loading:
                continue  # all ready: the start-up line says so
            if loading == shown:
                if live:  # the seconds go on counting on a terminal
                    out.write(f"\r\x1b[K  loading {len(loading)} of {len(names)}: {', '.join(loading)}  "
                              f"({time.monotonic() - began:.1f} s)")
                    out.flush()
                continue
            shown = loading
            text = f"  loading {len(loading)} of {len(names)}: {', '.join(loading)}  ({time.monotonic() - began:.1f} s)"
            out.write(f"\r\x1b[K{text}" if live else f"{text}\n")
            out.flush()

    thread = threading.Thread(target=report, name="start-progress", daemon=True)
    thread.start()
    try:
        readies: dict[str, Ready] = supervisor.start()
    finally:
        done.set()
        thread.join(timeout=2)
        if live:
            out.write("\r\x1b[K")
    for name, ready in sorted(readies.items()):
        print(f"  {name:8s} ready  {ready.backend}", file=out)
    print(f"started {len(names)} actors in {time.monotonic() - began:.1f} s", file=out)
    return readies


@contextmanager
def actor_set_for(config: Config, set_name: str, command: str, attach: bool,
                  running: RunningSet | None, drop: Sequence[str] = ()) -> Iterator[RunningSet | None]:
    """The set `command` drives, for the duration of the block: `running` (found by `find_running`), or one
    started now (and stopped after) when none runs. With `attach`, a missing set is an error instead, and a
    running one is used as it is (an actor that does not answer is not waited for)."""
    wanted = wanted_roles(config, set_name, drop)
    if running is not None:
        if not attach:  # --attach drives whatever answers, as it always has: a stalled actor is the turn's to report
            wait_until_served(config, running, wanted, command)
        print(f"using the set running at {running.address.sub_addr} ({len(running.readies)} actors)",
              file=sys.stderr)
        yield running
        return
    address = bus_address(config)
    if attach:
        raise TimeoutError(f"--attach: no set answers at {address.sub_addr}; start one with `rocky-relay serve` "
                           "(or drop --attach and one is started for this command)")
    from launch.supervisor import Supervisor

    names = [n for n in actor_set(config, set_name) if n not in drop]
    print(f"no set runs at {address.sub_addr}: starting the {set_name!r} set for this {command} "
          "(`rocky-relay serve` keeps one running, and every talk and say then uses it at once)", file=sys.stderr)
    supervisor = Supervisor(config, names)
    try:
        start_with_progress(supervisor)
        yield None
    finally:
        supervisor.stop()
