"""Two sets on one bus address: the second refuses to start instead of joining the first, and stopping one
never stops the other's actors of the same names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.base import Actor
from bus.endpoints import AddressInUse, endpoint_in_use
from bus.handshake import prove_path, wait_for_actors
from bus.messages import Ping, Ready, Shutdown
from bus.sockets import BusAddress, BusClient
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from tests.helpers import ActorThread

ROOT = Path(__file__).resolve().parents[1]
FAST = ["llm.backend=echo", "tts.backend=tone", "player.backend=wav"]


class Idle(Actor):
    name = "idle"


def answer_to(client: BusClient, nonce: int, timeout_s: float = 10.0) -> Ready:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and isinstance(env.msg, Ready) and env.msg.nonce == nonce:
            return env.msg
    raise AssertionError(f"no answer to ping {nonce} within {timeout_s:g} s")


def test_a_shutdown_that_names_an_actor_but_not_its_process_leaves_it_running(bus_address: BusAddress) -> None:
    client = BusClient(bus_address, ("ctl.",), name="test")
    thread = ActorThread(Idle(), bus_address)
    try:
        with thread:
            prove_path(client)
            wait_for_actors(client, {"idle"}, timeout_s=10)
            client.publish(Shutdown(actors=["idle"], pids=[os.getpid() + 100_000]))  # another set's "idle"
            client.publish(Shutdown(actors=["idle"]))  # a name alone
            client.publish(Ping(nonce=7))  # handled after both shutdowns: an answer means it ignored them
            assert answer_to(client, 7).actor == "idle" and thread.thread.is_alive()
        assert not thread.thread.is_alive()  # ActorThread.stop names it by its pid: that one it obeys
    finally:
        client.close()


def test_endpoint_in_use_sees_tcp_and_ipc_listeners(set_dir: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(set_dir / "sock"))
    unix.listen()
    try:
        assert endpoint_in_use(f"tcp://127.0.0.1:{listener.getsockname()[1]}")
        assert endpoint_in_use(f"ipc://{set_dir}/sock")
        assert not endpoint_in_use(f"ipc://{set_dir}/nothing-here")
    finally:
        listener.close()
        unix.close()
    assert not endpoint_in_use(f"ipc://{set_dir}/sock")  # the file is left, nobody listens: a stale one


def test_a_second_set_on_a_busy_address_fails_at_start_and_the_first_keeps_its_actors(set_dir: Path) -> None:
    overrides = [*FAST, f"bus.pub=ipc://{set_dir}/pub", f"bus.sub=ipc://{set_dir}/sub",
                 f"player.path={set_dir}/r-{{turn}}.wav", f"logger.path={set_dir}/turns.jsonl"]
    config = load_config(None, overrides)
    with Supervisor(config, config.sets["typed"], log_dir=set_dir / "first") as first:
        first.start(timeout_s=60)
        pids = {name: first.pid(name) for name in first.children}
        second = Supervisor(config, config.sets["typed"], log_dir=set_dir / "second")
        with pytest.raises(AddressInUse, match="address in use"):
            second.start(timeout_s=60)
        second.stop()
        assert {name: first.pid(name) for name in first.children} == pids
        assert all(first.restarts(name) == 0 for name in first.children)
        client = BusClient(bus_address(config), name="test")
        try:
            ready = wait_for_actors(client, set(pids) - {"proxy"}, timeout_s=10)
            assert {name: r.pid for name, r in ready.items()} == {n: p for n, p in pids.items() if n != "proxy"}
        finally:
            client.close()


def test_say_with_its_own_output_next_to_a_running_set_refuses_clearly(set_dir: Path) -> None:
    """`say` uses a running set by itself (tests/test_serve.py); one that asks for a player of its own (--output)
    would not get it there, and must say so rather than start a second set or send the turn to the first."""
    bus = [f"--set=bus.pub=ipc://{set_dir}/pub", f"--set=bus.sub=ipc://{set_dir}/sub"]
    config = load_config(None, [*FAST, *(b.removeprefix("--set=") for b in bus),
                                f"player.path={set_dir}/r-{{turn}}.wav", f"logger.path={set_dir}/turns.jsonl"])
    with Supervisor(config, config.sets["typed"], log_dir=set_dir / "first") as first:
        first.start(timeout_s=60)
        result = subprocess.run([sys.executable, "-m", "launch.cli", *bus, *(f"--set={o}" for o in FAST), "say",
                                 "--output", str(set_dir / "mine.wav"), "hello"], capture_output=True, text=True,
                                timeout=60, cwd=set_dir, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 2 and "--output would be ignored: a set runs at" in result.stderr, \
            result.stderr[-2000:]
        assert "bus of its own" in result.stderr and "Traceback" not in result.stderr
        assert (set_dir / "turns.jsonl").read_text() == ""  # no turn went to the first set
        assert not (set_dir / "mine.wav").exists()
        assert all(first.restarts(name) == 0 for name in first.children)
