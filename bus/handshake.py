"""Handshakes that beat ZeroMQ's slow-joiner problem: nothing relies on delivery before them.

A PUB socket drops what it sends before its connection and the subscribers'
filters are in place, so a client first proves its path through the proxy,
and whoever starts a turn first waits for every actor's `Ready`.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable

from bus.messages import Ping, Ready
from bus.sockets import BusClient

_nonces = itertools.count(random.randrange(1 << 30))


def prove_path(client: BusClient, timeout_s: float = 10.0) -> None:
    """Return once a message from `client`'s PUB came back to its own SUB through the proxy."""
    client.subscribe("ctl.ping")
    nonce = next(_nonces)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client.publish(Ping(nonce=nonce))
        step_end = time.monotonic() + 0.05
        while (left := step_end - time.monotonic()) > 0:
            env = client.recv(timeout_ms=left * 1000)
            if env is not None and isinstance(env.msg, Ping) and env.msg.nonce == nonce:
                return
    raise TimeoutError(f"{client.name}: no path through the bus proxy after {timeout_s:g} s "
                       "(is the proxy running, and are the bus addresses right?)")


def wait_for_actors(client: BusClient, actors: set[str], timeout_s: float = 120.0,
                    found: dict[str, Ready] | None = None,
                    pids: Callable[[str], int | None] | None = None) -> dict[str, Ready]:
    """Ping until every actor in `actors` answered `Ready`; their answers by name (also filled into
    `found` as they come, so a caller that times out keeps what it learnt). With `pids`, only the process
    it names counts: another satellite's actor of the same name on a shared bus is not ours."""
    client.subscribe("ctl.ready")
    found = {} if found is None else found
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        nonce = next(_nonces)
        client.publish(Ping(nonce=nonce))
        step_end = time.monotonic() + 0.2
        while (left := step_end - time.monotonic()) > 0:
            env = client.recv(timeout_ms=left * 1000)
            if (env is not None and isinstance(env.msg, Ready) and env.msg.actor in actors
                    and (pids is None or pids(env.msg.actor) == env.msg.pid)):
                found[env.msg.actor] = env.msg
        if actors <= set(found):
            return found
    missing = ", ".join(sorted(actors - set(found)))
    raise TimeoutError(f"actors not ready after {timeout_s:g} s: {missing} (see logs/actors/)")
