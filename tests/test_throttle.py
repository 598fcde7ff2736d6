"""The proxy's per-publisher budget (bus/throttle.py): the buckets alone, then a real proxy where one
publisher floods and another's messages all still arrive."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

from bus import session_guard
from bus.handshake import prove_path
from bus.messages import Say
from bus.sockets import BusAddress, BusClient
from bus.throttle import BURST_S, Budget, PublisherBudgets, forward_fairly
from tests.test_curve import curve_bus_of


def test_the_buckets_refill_at_their_rates_and_a_frame_bigger_than_the_bucket_waits_for_a_full_one() -> None:
    clock = [0.0]
    budget = Budget(msgs_per_s=10, bytes_per_s=1000, burst_s=1.0, clock=lambda: clock[0])
    assert [budget.allow(10) for _ in range(12)] == [True] * 10 + [False] * 2  # the burst, then empty
    clock[0] = 0.5
    assert [budget.allow(10) for _ in range(6)] == [True] * 5 + [False]  # half a second: five more
    clock[0] = 10.0
    assert budget.allow(5000)  # bigger than the whole byte bucket: it goes once the bucket is full ...
    clock[0] = 11.0
    assert not budget.allow(5000)  # ... and leaves it in debt
    clock[0] = 15.0
    assert budget.allow(5000)


RATE = 500.0
"""A small budget for this proxy, so one Python thread can flood past it."""


@contextmanager
def budgeted_proxy() -> Iterator[BusAddress]:
    """A proxy running `forward_fairly` with a budget of RATE messages a second per publisher."""
    folder = tempfile.mkdtemp(prefix="rr-throttle-")
    address = BusAddress(pub_addr=f"ipc://{folder}/pub", sub_addr=f"ipc://{folder}/sub")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xsub.bind(address.pub_addr)
    xpub.bind(address.sub_addr)
    budgets = PublisherBudgets(lambda: Budget(msgs_per_s=RATE))

    def run() -> None:
        with contextlib.suppress(zmq.ContextTerminated):
            forward_fairly(xsub, xpub, budgets)
        xsub.close(0)
        xpub.close(0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield address
    finally:
        ctx.term()
        thread.join(5)
        shutil.rmtree(folder, ignore_errors=True)
        assert not thread.is_alive(), "proxy did not stop"


def test_a_flooding_publisher_loses_its_excess_and_a_quiet_one_loses_nothing() -> None:
    with budgeted_proxy() as address:
        receiver, quiet, rogue = clients = [BusClient(address, ("say",), name="receiver"),
                                            BusClient(address, name="quiet"), BusClient(address, name="rogue")]
        try:
            flood_and_count(receiver, quiet, rogue, quiet_session="quiet", rogue_session="rogue")
        finally:
            for client in clients:
                client.close()


def test_over_curve_a_flooding_satellite_loses_its_excess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CURVE proxy (bus/session_guard.py) keeps the same budgets: alice floods, bob loses nothing."""
    monkeypatch.setattr(session_guard, "PublisherBudgets", lambda: PublisherBudgets(lambda: Budget(msgs_per_s=RATE)))
    with curve_bus_of(tmp_path, ("alice", "bob")) as bus:
        flood_and_count(bus.client("receiver", bus.address.curve, ("say",)), bus.client("bob", bus.satellites["bob"]),
                        bus.client("alice", bus.satellites["alice"]), quiet_session="bob", rogue_session="alice")


def flood_and_count(receiver: BusClient, quiet: BusClient, rogue: BusClient, quiet_session: str,
                    rogue_session: str) -> None:
    """`rogue` sprays from a thread while `quiet` sends 200; `receiver` must hear all of quiet's, and of the
    rogue's no more than its budget allows."""
    stop = threading.Event()
    sent = [0]

    def spray() -> None:  # valid messages, many more a second than a publisher's budget
        while not stop.is_set():
            rogue.publish(Say(session=rogue_session, text="flood", index=0))
            sent[0] += 1

    spraying = threading.Thread(target=spray, daemon=True)
    try:
        for client in (receiver, quiet, rogue):
            prove_path(client)
        started = time.monotonic()
        spraying.start()
        heard: dict[str, int] = {rogue_session: 0, quiet_session: 0}
        wanted = 200  # within the budget's burst, however fast they go
        for index in range(wanted):
            quiet.publish(Say(session=quiet_session, text="mine", index=index))
            env = receiver.recv(timeout_ms=5)
            while env is not None:
                heard[env.msg.session] = heard.get(env.msg.session, 0) + 1
                env = receiver.recv(timeout_ms=0)
        stop.set()
        spraying.join(5)
        while (env := receiver.recv(timeout_ms=500)) is not None:
            heard[env.msg.session] = heard.get(env.msg.session, 0) + 1
        elapsed = time.monotonic() - started
        print(f"rogue sent {sent[0]}, {heard[rogue_session]} passed in {elapsed:.1f} s; "
              f"quiet: {heard[quiet_session]}/{wanted}")
        assert heard[quiet_session] == wanted
        # The rogue's share is its budget over the time it sprayed plus the burst, however much it sent
        # (a loaded machine only makes it send less).
        assert sent[0] > RATE * (elapsed + BURST_S), "the rogue was too slow to pass its budget"
        assert heard[rogue_session] <= RATE * (elapsed + BURST_S)
    finally:
        stop.set()
        spraying.join(5)
