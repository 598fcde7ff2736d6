"""Bad frames and dead links on a real bus: a client counts and logs what it drops without a flood of log lines
or a busy recv, and ZMTP heartbeats notice a TCP peer gone silent and reconnect (the flood of a whole set:
test_overload.py).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Any

import zmq

from bus.handshake import prove_path
from bus.messages import Say
from bus.proxy import run_proxy
from bus.sockets import (
    DROP_LOG_FIRST,
    DROP_QUIET_S,
    DROP_TOPICS_KEPT,
    HEARTBEAT_IVL_MS,
    HEARTBEAT_TIMEOUT_MS,
    BusAddress,
    BusClient,
    DropLog,
)

# --- drop logging, unit and on a real bus -----------------------------------------------------------


class FakeLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_drop_log_logs_the_first_few_then_one_summary_a_second() -> None:
    clock = [100.0]
    fake = FakeLog()
    drops = DropLog("actor", clock=lambda: clock[0], logger=fake)
    for i in range(3000):  # 3000 bad frames over 3 s
        clock[0] = 100.0 + i / 1000
        drops.dropped("header is not msgpack", f"topic{i % 20}", 2)
    clock[0] = 103.5
    drops.tick()
    one_by_one = [f for e, f in fake.lines if e == "bad_frame_dropped"]
    summaries = [f for e, f in fake.lines if e == "bad_frames_dropped"]
    assert len(one_by_one) == DROP_LOG_FIRST
    assert 2 <= len(summaries) <= 4  # at most one a second over 3.5 s
    assert drops.total == 3000 == len(one_by_one) + sum(s["count"] for s in summaries)
    assert summaries[-1]["total"] == 3000
    assert all(len(s["topics"]) <= DROP_TOPICS_KEPT + 1 for s in summaries)  # + "(other)"
    clock[0] = 103.6
    drops.dropped("again", "say", 2)  # the same burst: counted, not logged one by one
    assert len(fake.lines) == len(one_by_one) + len(summaries)
    drops.flush()  # what close() does: the count is not lost
    assert fake.lines[-1][1]["count"] == 1
    clock[0] = 103.6 + DROP_QUIET_S + 1
    drops.dropped("a new burst", "say", 2)
    assert fake.lines[-1][0] == "bad_frame_dropped" and fake.lines[-1][1]["reason"] == "a new burst"


def test_recv_keeps_its_timeout_under_a_stream_of_garbage(bus_address: BusAddress) -> None:
    """Before: garbage kept recv busy until a valid message came, so an actor's on_idle never ran."""
    client = BusClient(bus_address, ("say",), name="victim")
    sender = BusClient(bus_address, name="garbage")
    stop = threading.Event()

    def spray() -> None:
        while not stop.is_set():
            for _ in range(200):
                sender.send_raw([b"say", b"\xc1"])
            stop.wait(0.001)

    spraying = threading.Thread(target=spray, daemon=True)
    try:
        prove_path(client)
        prove_path(sender)
        spraying.start()
        deadline = time.monotonic() + 10
        while client.dropped < 1000 and time.monotonic() < deadline:
            client.recv(timeout_ms=50)
        assert client.dropped >= 1000, "the garbage never arrived"
        started = time.monotonic()
        assert client.recv(timeout_ms=200) is None
        assert time.monotonic() - started < 2.0
        assert client.drops.logged_one_by_one == DROP_LOG_FIRST
        stop.set()  # while the spray goes on a valid message may be dropped at a full queue (see the flood)
        spraying.join(5)
        assert deliver(sender, client), "no valid message after the garbage"
    finally:
        stop.set()
        spraying.join(5)
        client.close()
        sender.close()


# --- links that drop: ZMTP heartbeats notice a dead TCP peer and reconnect ----------------------------


class Cable:
    """A TCP forwarder that can be pulled out: bytes stop both ways, nothing is closed (no FIN, no RST),
    as when a Pi loses power or Wi-Fi. Connections made after the cut are forwarded normally."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[float] = []
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.sockets: list[socket.socket] = [self.listener]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def cut(self) -> None:
        """Stop forwarding on every open connection (the selector thread picks it up on its next pass)."""
        self._cut = True

    _cut = False

    def _run(self) -> None:
        while not self.stop.is_set():
            if self._cut:
                for key in list(self.selector.get_map().values()):
                    if key.fileobj is not self.listener:
                        self.selector.unregister(key.fileobj)
                self._cut = False
            for key, _ in self.selector.select(0.05):
                if key.fileobj is self.listener:
                    near, _addr = self.listener.accept()
                    far = socket.create_connection(self.target)
                    self.sockets += [near, far]
                    self.accepted.append(time.monotonic())
                    self.selector.register(near, selectors.EVENT_READ, far)
                    self.selector.register(far, selectors.EVENT_READ, near)
                    continue
                source = key.fileobj
                assert isinstance(source, socket.socket)
                try:
                    data = source.recv(65536)
                    if data:
                        key.data.sendall(data)
                        continue
                except OSError:
                    pass
                self.selector.unregister(source)  # closed: leave the other end to its own timeouts

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()
        self.selector.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_dead_tcp_link_is_noticed_and_made_again() -> None:
    # Loopback stands for a LAN link here: heartbeats are asked for (a local bus goes without them).
    address = BusAddress(pub_addr=f"tcp://127.0.0.1:{free_port()}", sub_addr=f"tcp://127.0.0.1:{free_port()}",
                         heartbeats=True)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ready = threading.Event()
    proxy = threading.Thread(target=run_proxy, args=(address, ctx, ready), daemon=True)
    proxy.start()
    assert ready.wait(5)
    cable = Cable(("127.0.0.1", int(address.sub_addr.rsplit(":", 1)[1])))
    satellite = BusClient(BusAddress(pub_addr=address.pub_addr, sub_addr=f"tcp://127.0.0.1:{cable.port}",
                                     heartbeats=True),
                          ("say",), name="satellite")
    server = BusClient(address, name="server")
    try:
        assert deliver(server, satellite), "no path through the cable"
        assert len(cable.accepted) == 1
        cable.cut()
        cut_at = time.monotonic()
        deadline = cut_at + 3 * (HEARTBEAT_IVL_MS + HEARTBEAT_TIMEOUT_MS) / 1000
        while len(cable.accepted) < 2 and time.monotonic() < deadline:
            satellite.recv(timeout_ms=100)
        assert len(cable.accepted) == 2, "the SUB never noticed the dead link"
        noticed_s = cable.accepted[1] - cut_at
        print(f"dead link noticed and re-made after {noticed_s:.2f} s")
        assert noticed_s >= HEARTBEAT_TIMEOUT_MS / 1000 * 0.8  # by the heartbeat, not by something else
        assert deliver(server, satellite), "no message after the reconnect (subscriptions not re-sent?)"
    finally:
        satellite.close()
        server.close()
        cable.close()
        terminator = threading.Thread(target=ctx.term, daemon=True)
        terminator.start()
        terminator.join(5)
        proxy.join(5)
        assert not proxy.is_alive(), "bus proxy did not stop"


def deliver(sender: BusClient, receiver: BusClient, timeout_s: float = 10.0) -> bool:
    """Publish a Say until `receiver` hears one (slow joiner, reconnects)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sender.publish(Say(text="over the cable", index=0))
        env = receiver.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, Say):
            return True
    return False
