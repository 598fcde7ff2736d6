"""Test helpers: a real bus per test and `run_actor`, which drives one actor over it."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import queue
import tempfile
import threading
import time
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from actors.base import Actor
from actors.llm_backends import EchoGenerator
from actors.llm_prompt import Conversation
from bus.codec import Envelope
from bus.handshake import prove_path, wait_for_actors
from bus.messages import Message, Ping, Ready, Shutdown
from bus.sockets import BusAddress, BusClient

Sendable = Message | tuple[Message, bytes] | list[bytes]


class ActorThread:
    """An actor running its real loop in a thread, on a real bus; stopped by a bus `Shutdown`."""

    def __init__(self, actor: Actor, address: BusAddress) -> None:
        self.actor = actor
        self.address = address
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"actor-{actor.name}", daemon=True)

    def _run(self) -> None:
        try:
            self.actor.run(self.address)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> ActorThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.thread.is_alive():
            client = BusClient(self.address, name="stopper")
            try:
                prove_path(client)
                deadline = time.monotonic() + timeout_s
                while self.thread.is_alive() and time.monotonic() < deadline:
                    client.publish(Shutdown(actors=[self.actor.name], pids=[os.getpid()],
                                            session=self.actor.only_session or "local"))
                    self.thread.join(0.1)
            finally:
                client.close()
        assert not self.thread.is_alive(), f"{self.actor.name} did not stop"
        if self.error is not None:
            raise self.error


class Watched(Actor):
    """Mixed in before a real actor class (`class WatchedLeds(Watched, LedActor)`): each message its loop has
    handled is queued, so a test waits for that event instead of polling the actor's state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: queue.Queue[Message] = queue.Queue()

    def handle(self, env: Envelope) -> None:
        try:
            super().handle(env)
        finally:
            self.handled.put(env.msg)

    def wait_handled(self, cls: type[Message], timeout_s: float = 10.0) -> Message:
        """The next handled message of type `cls` (earlier ones of other types are passed over)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.handled.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(msg, cls):
                return msg
        raise AssertionError(f"{self.name} handled no {cls.__name__} within {timeout_s:g} s")


def send_all(client: BusClient, send: Sequence[Sendable]) -> None:
    for item in send:
        if isinstance(item, list):
            client.send_raw(item)
        elif isinstance(item, tuple):
            client.publish(*item)
        else:
            client.publish(item)


def collect(client: BusClient, expect: Sequence[type[Message]], timeout_s: float) -> list[Envelope]:
    """Messages until every class in `expect` was seen in that order (others may come between)."""
    seen: list[Envelope] = []
    wanted = list(expect)
    deadline = time.monotonic() + timeout_s
    while wanted and time.monotonic() < deadline:
        env = client.recv(timeout_ms=50)
        if env is None:
            continue
        seen.append(env)
        if isinstance(env.msg, wanted[0]):
            wanted.pop(0)
    if wanted:
        names = [type(e.msg).__name__ for e in seen]
        raise AssertionError(f"still waiting for {[w.__name__ for w in wanted]}; saw {names}")
    return seen


@contextmanager
def actor_on_bus(actor: Actor, address: BusAddress, listen: Sequence[str] = ("",),
                 timeout_s: float = 15.0) -> Iterator[BusClient]:
    """`actor` running and ready; yields a client listening to `listen`, for tests in several steps."""
    client = BusClient(address, listen, name="test-driver")
    try:
        with ActorThread(actor, address):
            prove_path(client)
            wait_for_actors(client, {actor.name}, timeout_s=timeout_s)
            yield client
    finally:
        client.close()


def run_actor(actor: Actor, address: BusAddress, send: Sequence[Sendable], expect: Sequence[Expected],
              listen: Sequence[str] = ("",), timeout_s: float = 15.0) -> list[Envelope]:
    """Start `actor` on the bus, wait for its `Ready`, send `send`; what came back on `listen`, which must be
    exactly `expect` (see `expect_exactly`): a missing, stray, reordered or duplicated message fails."""
    with actor_on_bus(actor, address, listen, timeout_s) as client:
        send_all(client, send)
        return expect_exactly(client, expect, timeout_s, sent=send)


@dataclass(frozen=True)
class OneOrMore:
    """In an expected sequence: one or more messages of `cls` in a row, for a count the test cannot know
    (a real model's tokens)."""

    cls: type[Message]


Expected = type[Message] | OneOrMore
_barrier_nonces = itertools.count(7_000_000)


def expect_exactly(client: BusClient, expect: Sequence[Expected], timeout_s: float,
                   sent: Sequence[Sendable] = ()) -> list[Envelope]:
    """The messages `client` receives, which must be `expect` exactly, by type and in order.

    Once the sequence is complete, a `Ping` goes out and everything up to its `Ready` still counts, so a
    duplicate or a stray message the actor published with the last expected one fails the test (one
    published later from another thread or socket can slip past). Not counted: echoes of `sent`, the
    handshake's pings and any `Ready` that answers no `Ping` in `sent`.
    """
    client.subscribe("ctl.ready")  # the barrier's answer
    asked = {m.nonce for m in _messages(sent) if isinstance(m, Ping)}
    echoes = [m for m in _messages(sent) if not isinstance(m, Ping)]
    seen: list[Envelope] = []
    states = _advance({(0, False)}, None, expect)
    barrier: int | None = None
    deadline = time.monotonic() + timeout_s

    def names() -> str:
        return f"expected {[_name(e) for e in expect]}, got {[type(e.msg).__name__ for e in seen]}"

    while time.monotonic() < deadline:
        if barrier is None and any(i == len(expect) for i, _ in states):
            barrier = next(_barrier_nonces)
            client.publish(Ping(nonce=barrier))
        env = client.recv(timeout_ms=50)
        if env is None:
            continue
        msg = env.msg
        if isinstance(msg, Ready) and msg.nonce == barrier:
            if not any(i == len(expect) for i, _ in states):
                raise AssertionError(names())
            return seen
        if isinstance(msg, Ping) or (isinstance(msg, Ready) and msg.nonce not in asked) or msg in echoes:
            continue
        seen.append(env)
        states = _advance(states, type(msg), expect)
        if not states:
            raise AssertionError(names())
    raise AssertionError(f"timed out after {timeout_s:g} s: {names()}")


def _advance(states: set[tuple[int, bool]], cls: type | None, expect: Sequence[Expected]) -> set[tuple[int, bool]]:
    """Where matching can be after one more message of `cls` (None: the start). A state is (how many items
    of `expect` are matched, whether the last one was a OneOrMore that may take another)."""
    if cls is None:
        return states
    after: set[tuple[int, bool]] = set()
    for i, repeating in states:
        if repeating and cls is typing.cast(OneOrMore, expect[i - 1]).cls:
            after.add((i, True))
        if i < len(expect):
            item = expect[i]
            if isinstance(item, OneOrMore) and cls is item.cls:
                after.add((i + 1, True))
            elif cls is item:
                after.add((i + 1, False))
    return after


def _messages(sent: Sequence[Sendable]) -> list[Message]:
    return [item[0] if isinstance(item, tuple) else item for item in sent if not isinstance(item, list)]


def _name(item: Expected) -> str:
    return f"{item.cls.__name__}+" if isinstance(item, OneOrMore) else item.__name__


M = TypeVar("M", bound=Message)


def handled_directly(actor: Actor, envs: Sequence[Envelope]) -> list[tuple[Message, bytes]]:
    """What `actor` publishes while its handler is called on `envs`, with no bus at all (a unit test of
    one actor's logic: nothing is queued, so there is no control message to look at)."""
    published: list[tuple[Message, bytes]] = []
    actor.publish = lambda msg, payload=b"": published.append((msg, payload))  # type: ignore[method-assign]
    actor.check_control = lambda: None  # type: ignore[method-assign]
    for env in envs:
        actor.handle(env)
    return published


def of_type(envs: Sequence[Envelope], cls: type[M]) -> list[M]:
    return [e.msg for e in envs if isinstance(e.msg, cls)]


def run_cli(*argv: str) -> tuple[int, str]:
    """`rocky-relay --config EMPTY ARGV...` in this process, through the real parser: exit code and stdout.
    The empty config keeps a developer's ./rocky-relay.toml out of the test."""
    from launch.cli import build_parser

    with tempfile.TemporaryDirectory(prefix="rr-cfg-") as folder:
        config = Path(folder) / "empty.toml"
        config.write_text("")
        args = build_parser().parse_args(["--config", str(config), *argv])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = int(args.func(args))
    return code, out.getvalue()


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (a test's unique temp dir or bus address)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]  # after "(comm)": names may hold spaces
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


class AskedGenerator(EchoGenerator):
    """The echo model, keeping every `Conversation` it was asked: what the real model would have been told."""

    def __init__(self) -> None:
        self.asked: list[Conversation] = []

    def stream(self, conversation: Conversation) -> Iterator[str]:
        self.asked.append(conversation)
        return super().stream(conversation)
