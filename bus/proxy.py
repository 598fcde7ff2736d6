"""The bus proxy: XSUB/XPUB forwarding between every publisher and every subscriber, CURVE-guarded off loopback.

Publishers connect to its XSUB side (`pub_addr`), subscribers to its XPUB side (`sub_addr`); with
`curve` keys it is a CURVE server that lets in only allow-listed keys (bus/security.py) and keeps each
satellite to its own session's topics (bus/session_guard.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
import zmq

from bus.security import (
    ALLOWLIST_RELOAD_S,
    REFUSAL_EVENTS,
    BusSecurityError,
    CurveGuard,
    CurveKeys,
    Refusal,
    apply_server_keys,
    require_security,
)
from bus.session_guard import forward, judge_subscriptions
from bus.sockets import HIGH_WATER_MARK, BusAddress, tune
from bus.throttle import INPUT_HWM, forward_fairly

log = structlog.get_logger("bus")


def run_proxy(address: BusAddress, ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
              ready: threading.Event | None = None, *, on_refused: Callable[[Refusal], None] | None = None,
              reload_s: float = ALLOWLIST_RELOAD_S) -> None:
    """Forward every message from publishers to subscribers until the context is terminated.

    With `address.curve` only allow-listed keys get in; `on_refused` hears of every peer turned away
    (from the guard's thread), and the allow-list is re-read every `reload_s`.

    A subscriber whose queue is full loses the message there and nobody counts it: libzmq's XPUB drops
    silently. ZMQ_XPUB_NODROP would make the proxy wait for the slowest subscriber instead, so one stuck
    actor would stop the whole bus; receivers see the loss (a turn that does not finish), not the proxy.
    """
    require_security(address)
    ctx = ctx or zmq.Context.instance()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        tune(sock, address.wants_heartbeats())
        sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
    xsub.setsockopt(zmq.RCVHWM, INPUT_HWM)  # a publisher's backlog waits in its own memory (bus/throttle.py)
    try:
        if address.curve is None:
            xsub.bind(address.pub_addr)
            xpub.bind(address.sub_addr)
            if ready is not None:
                ready.set()
            forward_fairly(xsub, xpub)  # zmq.proxy, within each publisher's budget: a flood is dropped here
        else:
            _run_curve_proxy(address, address.curve, ctx, xsub, xpub, ready, on_refused, reload_s)
    except zmq.ContextTerminated:
        pass
    finally:
        xsub.close(0)
        xpub.close(0)


def _run_curve_proxy(address: BusAddress, keys: CurveKeys, ctx: zmq.Context[zmq.Socket[bytes]],
                     xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], ready: threading.Event | None,
                     on_refused: Callable[[Refusal], None] | None, reload_s: float) -> None:
    tag = f"{id(xsub):x}"
    control = ctx.socket(zmq.PAIR)
    control.setsockopt(zmq.LINGER, 0)
    monitors = [f"inproc://rocky-relay.monitor.{tag}.{side}" for side in ("xsub", "xpub")]
    guard = CurveGuard(ctx, keys, f"inproc://rocky-relay.control.{tag}", monitors, on_refused, reload_s)
    try:
        control.bind(guard.control)
        for sock, endpoint in zip((xsub, xpub), monitors, strict=True):
            apply_server_keys(sock, keys)
            sock.monitor(endpoint, REFUSAL_EVENTS)
        judge_subscriptions(xsub, xpub)
        guard.start_and_wait()  # before bind: with no ZAP handler libzmq would let every key in
        xsub.bind(address.pub_addr)
        xpub.bind(address.sub_addr)
        bound = [(sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)) for sock in (xsub, xpub)]
        if ready is not None:
            ready.set()
        while True:
            # Returns only when the guard says TERMINATE: a key was revoked, or the guard is failing.
            forward(xsub, xpub, control)  # as zmq.proxy_steerable, checking what each satellite sends and reads
            if guard.failed:
                raise BusSecurityError("the bus guard failed; the proxy stops rather than run unchecked")
            _rebind(bound)
    finally:
        xsub.close(0)  # closed before the guard goes: no moment where a bound socket has no ZAP handler
        xpub.close(0)
        guard.halt()
        control.close(0)
        if guard.ident is not None:
            guard.join(2)


def _rebind(bound: list[tuple[zmq.Socket[bytes], str]], timeout_s: float = 5.0) -> None:
    """Drop every session (unbind ends a listener's connections) so each peer must pass ZAP again."""
    for sock, endpoint in bound:
        sock.unbind(endpoint)
    log.info("proxy_rebinding", reason="allow-list lost a key", endpoints=[e for _, e in bound])
    for sock, endpoint in bound:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                sock.bind(endpoint)
                break
            except zmq.ZMQError as exc:
                # unbind closes the listener on the I/O thread, a moment after it returns.
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
