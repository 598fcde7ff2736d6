"""Network hosts for tests: one network namespace per host, every host wired to the server by a veth pair.

    require_root()                                      # pytest.skip with the reason when ip netns is not usable
    with Hosts(("server", "pi", "rogue")) as hosts:     # names rrnet<pid>-<n>-server, ...; all torn down
        server = hosts.run("server", [sys.executable, "-m", "tests.delay_proxy", ...], stdout=PIPE, text=True)
        hosts.address("server")                         # "10.231.0.1"; clients are .2, .3, ... in order
        hosts.link_down("pi"); hosts.link_up("pi")      # pull and replug the pi's cable

Topology (one /24, so every host has one address and reaches the server directly):

    server ns:  br0 10.231.0.1/24 -- to-pi --(veth)-- eth0 10.231.0.2/24 :pi ns
                                  -- to-rogue -(veth)-- eth0 10.231.0.3/24 :rogue ns

A bridge in the server namespace, rather than one /30 per client, gives the server a single address to bind
and advertise. Veths are created straight inside the namespaces (`ip -n S link add ... peer ... netns C`),
so nothing ever appears in the root namespace and deleting the namespaces removes every link.
`link_down(host)` sets the server-side end (the "switch port") down: the host sees NO-CARRIER and packets
vanish both ways, like a pulled cable; connects and reads then time out instead of failing at once.

Each instance gets the prefix rrnet<pid>-<n>. A run killed before its teardown leaves namespaces behind;
the next `Hosts` (and `cleanup_stale`) deletes those whose pid is dead, after killing what runs inside.
Processes started with `run` get their own session (teardown kills the whole group) and, when started from
the main thread, PR_SET_PDEATHSIG so they die with the test process even if it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

import pytest

from launch.orphans import die_with_parent

ROOT_PREFIX = "rrnet"
SKIP_REASON = "needs root for network namespaces (ip netns)"
_NAME = re.compile(rf"^{ROOT_PREFIX}(\d+)-(\d+)-")
_HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")  # "to-" + name must fit the 15-character interface limit
_instances = itertools.count()


class NetnsError(RuntimeError):
    """An `ip` command failed, or teardown left something behind."""


def ip(*args: str, check: bool = True, timeout_s: float = 10.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def list_namespaces() -> list[str]:
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    return [int(pid) for pid in ip("netns", "pids", namespace, check=False).stdout.split()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # PermissionError too: someone else's live process


def _delete_namespace(namespace: str, timeout_s: float = 5.0) -> None:
    """Kill whatever still runs inside (it would keep the namespace and its links alive), then delete it."""
    deadline = time.monotonic() + timeout_s
    while pids := namespace_pids(namespace):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {pids} in {namespace} survived SIGKILL")
        time.sleep(0.02)  # polling a kill: there is no event for "another process's pid is gone"
    ip("netns", "del", namespace, check=False)


def cleanup_stale() -> list[str]:
    """Delete rrnet namespaces whose creating pid is dead (left by a killed run). Returns their names."""
    stale = [name for name in list_namespaces()
             if (match := _NAME.match(name)) and not _pid_alive(int(match.group(1)))]
    for name in stale:
        _delete_namespace(name)
    return stale


def require_root() -> None:
    """Skip the calling test unless this process may create network namespaces."""
    if os.geteuid() != 0:
        pytest.skip(SKIP_REASON)
    if shutil.which("ip") is None:
        pytest.skip(f"{SKIP_REASON}: the ip command (iproute2) is missing")
    probe = f"{ROOT_PREFIX}{os.getpid()}-{next(_instances)}-probe"
    added = ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        pytest.skip(f"{SKIP_REASON}: {added.stderr.strip()}")
    ip("netns", "del", probe, check=False)


class Hosts:
    """Namespaced hosts on one bridge in the server's namespace. A context manager; `close()` is idempotent."""

    BRIDGE = "br0"
    HOST_IFACE = "eth0"

    def __init__(self, names: Sequence[str] = ("server", "pi"), *, server: str = "server",
                 subnet: str = "10.231.0", stop_grace_s: float = 3.0) -> None:
        if server not in names or len(set(names)) != len(names):
            raise ValueError(f"names must be unique and include the server {server!r}: {names}")
        for name in names:
            if not _HOST_NAME.match(name):
                raise ValueError(f"host name {name!r} must match {_HOST_NAME.pattern}")
        self.prefix = f"{ROOT_PREFIX}{os.getpid()}-{next(_instances)}"
        self.server = server
        self.names = tuple(names)
        self.stop_grace_s = stop_grace_s
        clients = [name for name in names if name != server]
        self._addresses = {server: f"{subnet}.1", **{name: f"{subnet}.{i + 2}" for i, name in enumerate(clients)}}
        self._created: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._closed = False


    def __enter__(self) -> Hosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Hosts:
        cleanup_stale()
        try:
            for name in self.names:
                ip("netns", "add", self.namespace(name))
                self._created.append(self.namespace(name))
                ip("-n", self.namespace(name), "link", "set", "lo", "up")  # ZeroMQ on 127.0.0.1 inside
            server_ns = self.namespace(self.server)
            ip("-n", server_ns, "link", "add", self.BRIDGE, "type", "bridge")  # STP off: ports forward at once
            ip("-n", server_ns, "addr", "add", f"{self.address(self.server)}/24", "dev", self.BRIDGE)
            ip("-n", server_ns, "link", "set", self.BRIDGE, "up")
            for name in self.clients():
                port = self._port_iface(name)
                ip("-n", server_ns, "link", "add", port, "type", "veth",
                   "peer", "name", self.HOST_IFACE, "netns", self.namespace(name))
                ip("-n", server_ns, "link", "set", port, "master", self.BRIDGE)
                ip("-n", server_ns, "link", "set", port, "up")
                ip("-n", self.namespace(name), "addr", "add", f"{self.address(name)}/24", "dev", self.HOST_IFACE)
                ip("-n", self.namespace(name), "link", "set", self.HOST_IFACE, "up")
                self._wait_carrier(name, up=True)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill every process started here, delete the namespaces, and fail loudly if anything is left."""
        if self._closed:
            return
        self._closed = True
        self._stop_processes()
        for namespace in reversed(self._created):
            _delete_namespace(namespace)
        for proc in self._processes:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.close()
        left = self.leftovers()
        if left:
            raise NetnsError(f"teardown left behind: {left}")

    def leftovers(self) -> list[str]:
        """Namespaces, and root-namespace links, that still carry this instance's prefix."""
        mark = f"{self.prefix}-"
        links = [line for line in ip("-o", "link").stdout.splitlines() if mark in line]
        return [name for name in list_namespaces() if name.startswith(mark)] + links

    def _stop_processes(self) -> None:
        for proc in self._processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group: children the process started die too
        deadline = time.monotonic() + self.stop_grace_s
        for proc in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)


    def namespace(self, host: str) -> str:
        self._check_host(host)
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        self._check_host(host)
        return self._addresses[host]

    def clients(self) -> list[str]:
        return [name for name in self.names if name != self.server]


    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def run(self, host: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `host` (environment and cwd pass through); teardown kills it and its group."""
        if self._closed:
            raise NetnsError("hosts are closed")
        for owned in ("start_new_session", "process_group", "preexec_fn"):
            if owned in popen_kwargs:
                raise ValueError(f"{owned} is set by Hosts.run")
        # PDEATHSIG fires when the *thread* that forked exits, so only a main-thread child may use it.
        on_main = threading.current_thread() is threading.main_thread()
        # `ip netns exec` execs the command, which keeps the setting.
        preexec = die_with_parent(signal.SIGKILL) if on_main else None
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self.exec_argv(host, argv), start_new_session=True, preexec_fn=preexec, **popen_kwargs)
        self._processes.append(proc)
        return proc

    def check_call(self, host: str, argv: Sequence[str], *, timeout_s: float = 60.0) -> None:
        subprocess.run(self.exec_argv(host, argv), check=True, timeout=timeout_s)

    def check_output(self, host: str, argv: Sequence[str], *, timeout_s: float = 60.0) -> str:
        return subprocess.run(self.exec_argv(host, argv), check=True, timeout=timeout_s,
                              capture_output=True, text=True).stdout


    def link_down(self, host: str) -> None:
        """Pull `host`'s cable: its traffic to and from every other host is silently lost until `link_up`."""
        ip("-n", self.namespace(self.server), "link", "set", self._port_iface(host), "down")
        self._wait_carrier(host, up=False)

    def link_up(self, host: str) -> None:
        """Replug it. Returns once packets flow again; new connections then succeed at their first try."""
        ip("-n", self.namespace(self.server), "link", "set", self._port_iface(host), "up")
        self._wait_carrier(host, up=True)
        # An ARP lookup begun while the cable was out keeps its spent retries and can fail ~1 s after the
        # replug with EHOSTUNREACH (seen here). Forgetting both ends' entries makes the next connect depend
        # on the link alone, not on where the kernel's ARP timers happened to be.
        ip("-n", self.namespace(host), "neigh", "flush", "dev", self.HOST_IFACE)
        ip("-n", self.namespace(self.server), "neigh", "flush", "to", self.address(host))

    def _port_iface(self, host: str) -> str:
        self._check_host(host)
        if host == self.server:
            raise ValueError("the server has no cable of its own: pull a client's")
        return f"to-{host}"

    def _wait_carrier(self, host: str, *, up: bool, timeout_s: float = 5.0) -> None:
        """Wait until the kernel has finished bringing `host`'s path to the server up (or down).

        The carrier flag flips at once, but the kernel's linkwatch worker attaches the queueing discipline
        later, and until then packets are dropped: a connect right after `link_up` lost its first SYN under
        load. Operstate is set by that same worker, so "UP" on all three interfaces means traffic flows.
        """
        server_ns = self.namespace(self.server)
        path = [(self.namespace(host), self.HOST_IFACE), (server_ns, self._port_iface(host))]
        if up:
            path.append((server_ns, self.BRIDGE))  # with its only port down the bridge loses carrier too
        deadline = time.monotonic() + timeout_s
        while True:
            states = {iface: self._operstate(ns, iface) for ns, iface in path}
            if all((state == "UP") == up for state in states.values()):
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"{host}: link did not go {'up' if up else 'down'}: {states}")
            time.sleep(0.01)  # no event to wait on short of a netlink monitor; bounded by the deadline

    @staticmethod
    def _operstate(namespace: str, iface: str) -> str:
        shown = json.loads(ip("-j", "-n", namespace, "link", "show", "dev", iface).stdout)
        return str(shown[0]["operstate"])

    def _check_host(self, host: str) -> None:
        if host not in self.names:
            raise KeyError(f"unknown host {host!r}; hosts are {self.names}")


class LineReader:
    """Reads a process's text stdout in a thread, so tests can wait for a line with a timeout."""

    def __init__(self, stream: IO[str] | None) -> None:
        if stream is None:
            raise ValueError("start the process with stdout=subprocess.PIPE, text=True")
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stream = stream
        self._thread = threading.Thread(target=self._read, name="line-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._stream:
                self._queue.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass  # the stream was closed by teardown: same as EOF
        self._queue.put(None)

    def readline(self, timeout_s: float) -> str:
        """The next line; TimeoutError when none comes in time, EOFError when the process closed stdout."""
        try:
            line = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout_s} s (so far: {self.lines[-5:]})") from None
        if line is None:
            self._queue.put(None)  # stay at EOF for later calls
            raise EOFError(f"stream ended (last lines: {self.lines[-5:]})")
        self.lines.append(line)
        return line

    def wait_for(self, needle: str, timeout_s: float) -> str:
        """Consume lines until one contains `needle`; return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if needle in line:
                return line
