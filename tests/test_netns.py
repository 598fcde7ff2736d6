"""The two-host test infrastructure itself: namespaces, the cable, the delay proxy, teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.delay_proxy import DelayProxy
from tests.netns import ROOT_PREFIX, Hosts, LineReader, cleanup_stale, ip, list_namespaces, require_root

PY = sys.executable
ECHO_SERVER = r"""
import socket, threading
srv = socket.create_server(("0.0.0.0", 0))
print("listening", srv.getsockname()[1], flush=True)
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, peer = srv.accept()
    print("accepted", peer[0], flush=True)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""
# Commands on stdin, one JSON answer per line: "connect HOST PORT", "echo N" (N round trips of 32 bytes).
ECHO_CLIENT = r"""
import json, socket, statistics, sys, time
timeout_s = float(sys.argv[1])
conn = None
for line in sys.stdin:
    cmd, *args = line.split()
    start = time.monotonic()
    try:
        if cmd == "connect":
            if conn:
                conn.close()
            conn = socket.create_connection((args[0], int(args[1])), timeout=timeout_s)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answer = {}
        else:
            rtts = []
            for _ in range(int(args[0])):
                sent = time.monotonic()
                conn.sendall(b"x" * 32)
                got = b""
                while len(got) < 32:
                    chunk = conn.recv(32 - len(got))
                    if not chunk:
                        raise EOFError("closed")
                    got += chunk
                rtts.append((time.monotonic() - sent) * 1000)
            answer = {"median_ms": statistics.median(rtts)}
        answer["ok"] = True
    except Exception as exc:
        answer = {"ok": False, "error": repr(exc)}
    answer["elapsed_s"] = time.monotonic() - start
    print(json.dumps(answer), flush=True)
"""


class Client:
    """ECHO_CLIENT running in a host, driven line by line."""

    def __init__(self, hosts: Hosts, host: str, timeout_s: float = 1.0) -> None:
        self.proc = hosts.run(host, [PY, "-c", ECHO_CLIENT, str(timeout_s)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.out = LineReader(self.proc.stdout)

    def ask(self, command: str, timeout_s: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.out.readline(timeout_s))
        return answer


def start_echo(hosts: Hosts, host: str = "server") -> tuple[int, LineReader]:
    proc = hosts.run(host, [PY, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    out = LineReader(proc.stdout)
    return int(out.wait_for("listening", 15).split()[1]), out


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    require_root()
    with Hosts(("server", "pi", "rogue")) as made:
        yield made


def test_tcp_crosses_namespaces(hosts: Hosts) -> None:
    port, server_out = start_echo(hosts)
    for host in ("pi", "rogue"):
        client = Client(hosts, host)
        assert client.ask(f"connect {hosts.address('server')} {port}")["ok"]
        assert client.ask("echo 5")["ok"]
        # The server saw the client's own veth address: the bytes crossed the namespaces, not a loopback.
        assert server_out.wait_for("accepted", 5) == f"accepted {hosts.address(host)}"
    # Nothing of ours is in the root namespace, and the root namespace cannot reach the hosts' subnet.
    assert hosts.prefix not in ip("-o", "link").stdout
    with pytest.raises(OSError):
        socket.create_connection((hosts.address("server"), port), timeout=0.5).close()


def test_link_down_fails_within_bounds_and_link_up_restores(hosts: Hosts) -> None:
    port, _ = start_echo(hosts)
    server = f"{hosts.address('server')} {port}"
    pi, rogue = Client(hosts, "pi", timeout_s=1.0), Client(hosts, "rogue", timeout_s=1.0)
    for client in (pi, rogue):
        assert client.ask(f"connect {server}")["ok"] and client.ask("echo 1")["ok"]

    hosts.link_down("pi")
    mid_stream = pi.ask("echo 1")  # an established connection: the reply never comes
    assert not mid_stream["ok"] and "timed out" in mid_stream["error"] and mid_stream["elapsed_s"] < 2.0
    fresh = pi.ask(f"connect {server}")
    assert not fresh["ok"] and fresh["elapsed_s"] < 2.0, fresh
    assert rogue.ask("echo 3")["ok"], "pulling the pi's cable must not cut the other hosts"

    hosts.link_up("pi")
    reconnect = pi.ask(f"connect {server}")
    assert reconnect["ok"], reconnect
    assert pi.ask("echo 3")["ok"]


def test_delay_proxy_adds_delay_each_way_across_namespaces(hosts: Hosts, tmp_path: Path) -> None:
    port, _ = start_echo(hosts)
    log_path = tmp_path / "proxy.log"
    with log_path.open("w") as log_file:
        proxy = hosts.run("pi", [PY, "-m", "tests.delay_proxy", "--listen", "127.0.0.1:0",
                                 "--target", f"{hosts.address('server')}:{port}", "--delay-ms", "20"],
                          stdout=subprocess.PIPE, stderr=log_file, text=True)
    proxy_port = int(LineReader(proxy.stdout).wait_for("listening", 15).rsplit(":", 1)[1])
    client = Client(hosts, "pi", timeout_s=5.0)
    assert client.ask(f"connect {hosts.address('server')} {port}")["ok"]
    direct_ms = client.ask("echo 20")["median_ms"]
    assert client.ask(f"connect 127.0.0.1 {proxy_port}")["ok"]
    delayed_ms = client.ask("echo 20")["median_ms"]
    # 20 ms each way: a round trip through the proxy takes at least 40 ms, however loaded the machine (a timer
    # never fires early). No upper bound and no comparison with the direct figure: load makes those random.
    assert delayed_ms >= 39.0, (direct_ms, delayed_ms)

    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(10) == 0, "SIGTERM must stop the proxy cleanly"
    log_text = log_path.read_text()
    assert "proxy_connection_opened" in log_text and "proxy_stopped" in log_text, log_text


def test_zeromq_pub_sub_across_namespaces(hosts: Hosts) -> None:
    publisher = hosts.run("server", [PY, "-c", (
        "import time, zmq\n"
        "pub = zmq.Context().socket(zmq.PUB); pub.linger = 0\n"
        "print('port', pub.bind_to_random_port('tcp://0.0.0.0'), flush=True)\n"
        # Resent until the test ends: a PUB drops what it sends before the subscriber joins (slow joiner).
        "while True:\n"
        "    pub.send_multipart([b'ctl.ping', b'hello from server']); time.sleep(0.05)\n")],
        stdout=subprocess.PIPE, text=True)
    port = LineReader(publisher.stdout).wait_for("port", 15).split()[1]
    subscriber = hosts.run("pi", [PY, "-c", (
        "import sys, zmq\n"
        "sub = zmq.Context().socket(zmq.SUB); sub.linger = 0; sub.rcvtimeo = 10000\n"
        "sub.subscribe(b'ctl.'); sub.connect(sys.argv[1])\n"
        "print(sub.recv_multipart()[1].decode(), flush=True)\n"), f"tcp://{hosts.address('server')}:{port}"],
        stdout=subprocess.PIPE, text=True)
    assert LineReader(subscriber.stdout).readline(15) == "hello from server"
    assert subscriber.wait(5) == 0


def test_teardown_removes_everything_even_when_the_body_raises() -> None:
    require_root()
    with pytest.raises(RuntimeError, match="test body failed"), Hosts(("server", "pi")) as made:
        # A process that ignores SIGTERM, in its own group with a child: teardown must still kill both.
        stubborn = made.run("pi", ["sh", "-c", "trap '' TERM; sleep 600 & wait"])
        made.stop_grace_s = 0.5
        names = [made.namespace(name) for name in made.names]
        assert set(names) <= set(list_namespaces())
        raise RuntimeError("test body failed")
    assert stubborn.poll() is not None
    assert not set(names) & set(list_namespaces())
    assert made.leftovers() == []
    assert made.prefix not in ip("-o", "link").stdout


def test_stale_namespaces_of_dead_runs_are_removed_and_live_ones_kept() -> None:
    require_root()
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid is now dead: it stands for a test run that was SIGKILLed
    stale = f"{ROOT_PREFIX}{finished.pid}-0-server"
    live = f"{ROOT_PREFIX}{os.getpid()}-999-server"
    orphan: subprocess.Popen[bytes] | None = None
    try:
        for name in (stale, live):
            ip("netns", "add", name)
        orphan = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "600"], start_new_session=True)
        deadline = time.monotonic() + 5
        while not ip("netns", "pids", stale).stdout.strip():  # wait for it to enter the namespace
            assert time.monotonic() < deadline, "sleep never entered the namespace"
            time.sleep(0.01)
        assert stale in cleanup_stale()
        assert orphan.wait(5) == -signal.SIGKILL, "what ran inside a stale namespace must be killed"
        assert stale not in list_namespaces()
        assert live in list_namespaces(), "a namespace of a running process must be left alone"
    finally:
        if orphan is not None and orphan.poll() is None:
            orphan.kill()
            orphan.wait(5)
        for name in (stale, live):
            ip("netns", "del", name, check=False)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := self.request.recv(65536):
            self.request.sendall(data)


def _median_rtt_ms(port: int, rounds: int = 20) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(rounds):
            sent = time.monotonic()
            conn.sendall(b"y" * 32)
            got = b""
            while len(got) < 32:
                got += conn.recv(32 - len(got))
            rtts.append((time.monotonic() - sent) * 1000)
    return statistics.median(rtts)


def test_delay_proxy_python_api_many_connections_and_close() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    with server:
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        try:
            target = server.server_address[:2]
            with DelayProxy("127.0.0.1:0", (str(target[0]), int(target[1])), delay_ms=20) as proxy:
                assert proxy.port != 0
                direct_ms, delayed_ms = _median_rtt_ms(int(target[1])), _median_rtt_ms(proxy.port)
                assert delayed_ms >= 39.0, (direct_ms, delayed_ms)  # 2 x 20 ms at the least, never an upper bound
                # Many connections at once, as ZeroMQ opens one per socket; a burst on each keeps its order.
                conns = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(40)]
                for i, conn in enumerate(conns):
                    conn.sendall(b"".join(b"%d:%03d," % (i, n) for n in range(100)))
                for i, conn in enumerate(conns):
                    want = b"".join(b"%d:%03d," % (i, n) for n in range(100))
                    got = b""
                    while len(got) < len(want):
                        got += conn.recv(65536)
                    assert got == want
                    conn.close()
                # Our side closed: the proxy closes the upstream too, and its count returns to zero.
                deadline = time.monotonic() + 5
                while proxy.core.active_connections:
                    assert time.monotonic() < deadline, proxy.core.active_connections
                    time.sleep(0.01)
                assert proxy.core.total_connections == 41
            # An upstream that refuses: the proxy closes the client's side instead of leaving it hanging.
            with socket.socket() as unused:
                unused.bind(("127.0.0.1", 0))
                refused_port = unused.getsockname()[1]
            with DelayProxy(("127.0.0.1", 0), ("127.0.0.1", refused_port), delay_ms=20) as proxy, \
                    socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
                assert conn.recv(1) == b""
        finally:
            server.shutdown()
            serving.join(5)
