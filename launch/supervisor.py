"""Spawns an actor set, waits for every `Ready`, restarts what crashes, and stops it all.

Every actor is its own OS process (`python -m launch.actor_main`), in its own
process group (not its own session: see `_spawn`) so a terminal's Ctrl-C reaches only the supervisor, which then
stops the set in order. Children also get PR_SET_PDEATHSIG, so even a
supervisor killed with -9 leaves no orphan behind. One long-lived monitor
thread does all spawning, because the death signal is tied to the thread that
forked the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from actors.cpu import claim_priority
from bus.endpoints import AddressInUse, address_in_use, endpoint_in_use
from bus.handshake import prove_path, wait_for_actors
from bus.messages import ActorDown, Ready
from bus.privacy import PRIVATE_MODE
from bus.sockets import BusClient
from launch.actor_main import EXIT_START_FAILED
from launch.config import Config, bus_address, expand_replicas
from launch.orphans import die_with_parent

RESTART_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Delay before the n-th quick restart of the same actor: no restart storms."""
STABLE_AFTER_S = 30.0
"""An actor that ran this long is healthy again: its backoff starts over."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_failures: int = 0
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    died_at: float = 0.0
    died_wall: float = 0.0
    down_reported: bool = True
    """The logger and the others were told of the last death (`ctl.down`)."""


@dataclass(frozen=True)
class Restart:
    """One death and respawn, for tests and the reliability report (monotonic seconds)."""

    name: str
    exit_code: int
    died_at: float
    respawned_at: float


class Supervisor:
    def __init__(self, config: Config, actors: list[str], log_dir: str | Path = "logs/actors") -> None:
        self.config = config
        self.children = {name: Child(name) for name in expand_replicas(config, actors)}
        self.log_dir = Path(log_dir)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.monitor: threading.Thread | None = None
        self.started = threading.Event()
        self.start_over = threading.Event()
        """`start` has returned or raised: from now on the monitor alone reports deaths."""
        self.readies: dict[str, Ready] = {}
        self.start_error: BaseException | None = None
        self.restart_log: list[Restart] = []
        self._bus: BusClient | None = None
        """The monitor thread's own client, for `ctl.down` reports."""
        self._config_path: Path | None = None
        self.priority_note = ""
        """What `start` got when it asked for `server.priority` (actors/cpu.py `claim_priority`), in words."""

    # --- public ------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> dict[str, Ready]:
        """Spawn every actor and return once each has answered `Ready`."""
        if "proxy" in self.children:
            address = bus_address(self.config)
            if busy := [e for e in (address.pub_addr, address.sub_addr) if endpoint_in_use(e)]:
                raise AddressInUse(f"{', '.join(busy)}: {address_in_use(address)}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.priority_note = claim_priority(self.config.server.priority)  # before the children: they inherit it
        self.monitor = threading.Thread(target=self._monitor, name="supervisor", daemon=True)
        self.monitor.start()
        if not self.started.wait(30):
            raise RuntimeError("supervisor could not spawn the actors")
        names = {n for n in self.children if n != "proxy"}
        client = BusClient(bus_address(self.config), name="supervisor")
        deadline = time.monotonic() + timeout_s
        try:
            prove_path(client, timeout_s=min(30.0, timeout_s))
            while True:
                # An actor that could not start (exit 2: a model, a device, the proxy's address taken by
                # another set, whose bus the others may have joined meanwhile) would only fail again: stop now.
                failed = [n for n in self.children if (n == "proxy" or n not in self.readies)
                          and EXIT_START_FAILED in self.children[n].exit_codes]
                if failed:
                    raise TimeoutError(f"{', '.join(sorted(failed))} could not start; {self.failure_summary()}")
                if names <= set(self.readies):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"actors not ready after {timeout_s:g} s: "
                                       f"{', '.join(sorted(names - set(self.readies)))}; {self.failure_summary()}")
                with contextlib.suppress(TimeoutError):
                    wait_for_actors(client, names, timeout_s=1.0, found=self.readies, pids=self.pid)
        finally:
            client.close()
            self.start_over.set()
        return self.readies

    def pid(self, name: str) -> int | None:
        proc = self.children[name].process
        return proc.pid if proc is not None else None

    def restarts(self, name: str) -> int:
        return self.children[name].restarts

    def failure_summary(self) -> str:
        """Which actors exited, with the reason each logged last (what a user must fix)."""
        dead = [f"{c.name} exited {c.exit_codes[-1]}{self._last_error(c.name)}"
                for c in self.children.values() if c.exit_codes]
        return ("; ".join(dead) + f" (logs in {self.log_dir}/)") if dead else "no actor exited"

    def _last_error(self, name: str) -> str:
        try:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-50:]
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") in ("actor_failed", "proxy_refused"):
                return f": {entry.get('error', '')}"
        return ""

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to every actor (a clean stop, see actor_main), then to the proxy, then SIGKILL what is left.

        By signal to this set's own processes, not a `Shutdown` on the bus: the bus may be shared with a server,
        other satellites or another set, and a satellite's proxy refuses its `Shutdown` (bus/session_guard.py).
        """
        if self.stopping.is_set():
            return
        self.stopping.set()
        actors = {n for n in self.children if n != "proxy"}
        self._signal_all(signal.SIGTERM, actors)
        self._wait_exit(actors, grace_s)
        self._signal_all(signal.SIGTERM)
        self._wait_exit(set(self.children), 2.0)
        self._signal_all(signal.SIGKILL)
        self._wait_exit(set(self.children), 2.0)
        if self.monitor is not None:
            self.monitor.join(timeout=2)
        if self._config_path is not None:
            self._config_path.unlink(missing_ok=True)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals ---------------------------------------------------------------
    def _config_file(self) -> Path:
        """The config as a private file the children read: never on a command line (secrets in it)."""
        if self._config_path is None:
            fd, name = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=self.log_dir)  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.config.to_dict(), f)
            self._config_path = Path(name).resolve()
        return self._config_path

    def _spawn(self, child: Child) -> None:
        fd = os.open(self.log_dir / f"{child.name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        log = os.fdopen(fd, "ab")
        try:
            child.process = subprocess.Popen(
                [sys.executable, "-m", "launch.actor_main", child.name, str(self._config_file())],
                # Its own process group keeps the terminal's Ctrl-C away from it, but not its own session:
                # with the kernel's autogroup scheduling each session is one group that gets a fair share of
                # the CPU whatever its nice value, so a `nice -n 19` loop took a whole core from the LLM.
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, process_group=0,
                preexec_fn=die_with_parent(), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        child.started_at = time.monotonic()

    def _monitor(self) -> None:
        order = sorted(self.children.values(), key=lambda c: c.name != "proxy")  # the proxy first
        for child in order:
            self._spawn(child)
        self.started.set()
        try:
            while not self.stopping.wait(0.05):
                for child in order:
                    self._check(child)
        finally:
            if self._bus is not None:
                self._bus.close()

    def _check(self, child: Child) -> None:
        proc = child.process
        now = time.monotonic()
        if proc is not None and proc.poll() is not None:
            child.exit_codes.append(proc.returncode)
            child.process = None
            child.died_at, child.down_reported = now, False
            child.died_wall = time.time()
            quick = now - child.started_at < STABLE_AFTER_S
            child.quick_failures = child.quick_failures + 1 if quick else 0
            delay = RESTART_BACKOFF_S[min(child.quick_failures, len(RESTART_BACKOFF_S)) - 1] if quick else 0.0
            child.next_start = now + delay
            if proc.returncode != EXIT_START_FAILED or child.name in self.readies or self.start_over.is_set():
                # (an actor that cannot start while `start` waits for it: `start` reports it once, with the reason)
                sys.stderr.write(f"rocky-relay: {child.name} exited with {proc.returncode}; "
                                 f"restarting in {delay:.1f} s (log: {self.log_dir / (child.name + '.log')})\n")
            if child.name != "proxy":  # with the proxy gone nobody would hear it: report once it is back
                self._report_down(child, restart_in_s=delay)
        if child.process is None and now >= child.next_start and not self.stopping.is_set():
            child.restarts += 1
            self._spawn(child)
            self.restart_log.append(Restart(child.name, child.exit_codes[-1], child.died_at, child.started_at))
            if not child.down_reported:
                self._report_down(child, restart_in_s=0.0)

    def _report_down(self, child: Child, restart_in_s: float) -> None:
        """Tell the bus an actor died, so the turns it was in end with an error instead of hanging."""
        if self.stopping.is_set():
            return
        try:
            if self._bus is None:
                self._bus = BusClient(bus_address(self.config), name="supervisor-monitor")
                prove_path(self._bus, timeout_s=5.0)
            elif child.name == "proxy":
                prove_path(self._bus, timeout_s=5.0)  # the new proxy must be forwarding first
                # ... and every actor reconnected (each backs off on its own), or the logger misses the news.
                with contextlib.suppress(TimeoutError):
                    wait_for_actors(self._bus, {n for n in self.children if n != "proxy"}, timeout_s=10.0,
                                    pids=self.pid)
            self._bus.publish(ActorDown(actor=child.name, exit_code=child.exit_codes[-1], restart_in_s=restart_in_s,
                                        died_at=child.died_wall))
            child.down_reported = True
        except TimeoutError:
            sys.stderr.write(f"rocky-relay: could not report {child.name}'s exit on the bus (no proxy)\n")

    def _signal_all(self, sig: int, names: set[str] | None = None) -> None:
        for child in self.children.values():
            if names is not None and child.name not in names:
                continue
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(sig)

    def _wait_exit(self, names: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            proc = self.children[name].process
            if proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
