"""CURVE security of the bus: which keys a peer uses, who may connect, and the guard that enforces it.

The key files are read and written by bus/keys.py; a bus that leaves the machine without keys is
refused here (`require_security`), and the proxy's `CurveGuard` lets in only allow-listed keys.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import zmq
from zmq.auth import load_certificate
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

if TYPE_CHECKING:
    from bus.sockets import BusAddress

log = structlog.get_logger("bus.security")

DEFAULT_KEYS_DIR = Path("~/.config/rocky-relay/keys")
SERVER = "server"
CLIENTS_DIR = "clients"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
ZAP_DOMAIN = b"rocky-relay"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ALLOWLIST_RELOAD_S = 1.0
"""How often the proxy looks for added or revoked keys."""
REFUSAL_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
"""Handshake failures that never reach ZAP (a peer without CURVE); ZAP refusals are logged by the guard."""


class BusSecurityError(ValueError):
    """A bus that cannot be secured as asked; the message says what to run or set."""


@dataclass(frozen=True)
class CurveKeys:
    """This peer's CURVE key pair and the server's public key (z85, 40 bytes each)."""

    server_public: bytes
    public: bytes
    secret: bytes = field(repr=False)
    name: str = SERVER
    """Whose pair this is: `server`, or the satellite's name."""
    allow_dir: Path | None = None
    """The allow-list folder; only a store with the server's secret key has one, so only it runs the proxy."""


@dataclass(frozen=True)
class Refusal:
    """A peer the proxy turned away."""

    reason: str
    peer: str = ""
    """The peer's IP address (known for ZAP refusals only)."""
    key: str = ""
    """The z85 public key it offered, if it got that far."""


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and TCP to a loopback address: traffic that cannot leave this machine."""
    transport, sep, rest = endpoint.partition("://")
    if not sep:
        return False
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = rest.rpartition(";")[2].rpartition(":")[0].strip("[]")  # tcp://[src;]host:port
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or `*`: may well be reachable from the LAN


def require_security(address: BusAddress) -> None:
    """Refuse a bus that leaves this machine without CURVE keys (loopback stays zero-config)."""
    if address.curve is not None:
        return
    remote = [e for e in (address.pub_addr, address.sub_addr) if not is_local_endpoint(e)]
    if remote:
        raise BusSecurityError(
            f"bus address {remote[0]} is reachable from other machines, so it must be secured with CURVE: "
            "run `rocky-relay keys init` on the server (and `rocky-relay keys add NAME` for each satellite), "
            f'then set [security] keys_dir = "{DEFAULT_KEYS_DIR}" in the config '
            "(or --set security.keys_dir=DIR)")


def load_allowlist(keys: CurveKeys) -> dict[bytes, str]:
    """Public key -> name of every peer allowed on the bus: the server itself and each clients/NAME.key."""
    allowed = {keys.server_public: SERVER}
    if keys.allow_dir is None or not keys.allow_dir.is_dir():
        return allowed
    for path in sorted(keys.allow_dir.glob("*" + PUBLIC_SUFFIX)):
        try:
            allowed[load_certificate(path)[0]] = path.name[: -len(PUBLIC_SUFFIX)]
        except (OSError, ValueError) as exc:  # a half-copied file: skipped until it changes again
            log.warning("allowlist_entry_unreadable", path=str(path), error=str(exc))
    return allowed


def _allowlist_signature(keys: CurveKeys) -> tuple[tuple[str, int, int], ...]:
    """What changes when a key file is added, replaced or removed (cheap enough to check every second)."""
    if keys.allow_dir is None:
        return ()
    entries = []
    try:
        for entry in os.scandir(keys.allow_dir):
            if entry.name.endswith(PUBLIC_SUFFIX):
                with contextlib.suppress(FileNotFoundError):  # removed while we looked: gone anyway
                    st = entry.stat()
                    entries.append((entry.name, st.st_mtime_ns, st.st_size))
    except FileNotFoundError:
        return ()
    return tuple(sorted(entries))


def apply_server_keys(sock: zmq.Socket[bytes], keys: CurveKeys) -> None:
    """Make `sock` a CURVE server whose peers are checked by ZAP (call before bind)."""
    if keys.allow_dir is None or keys.public != keys.server_public:
        raise BusSecurityError(f"the key pair {keys.name!r} is a satellite's: only the server's key store "
                               "(with server.key_secret and clients/) can run the bus proxy")
    sock.curve_server = True
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
    sock.zap_domain = ZAP_DOMAIN


def apply_client_keys(sock: zmq.Socket[bytes], keys: CurveKeys) -> None:
    """Make `sock` a CURVE client of the server (call before connect)."""
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret


class CurveGuard(threading.Thread):
    """The proxy's ZAP handler: lets in only allow-listed keys, reloads the list, logs refused peers.

    libzmq lets *every* CURVE key in when no ZAP handler is bound, so the proxy binds only after
    `start_and_wait`, and the guard asks the proxy to stop (over `control`) before it ever closes.
    A revoked key keeps an open session, so on a removal the guard asks the proxy to drop every
    connection (also over `control`); allowed peers reconnect at once, the revoked one is refused.
    """

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], keys: CurveKeys, control: str,
                 monitors: Sequence[str] = (), on_refused: Callable[[Refusal], None] | None = None,
                 reload_s: float = ALLOWLIST_RELOAD_S) -> None:
        super().__init__(name="bus-guard", daemon=True)
        self.ctx, self.keys, self.control, self.monitors = ctx, keys, control, list(monitors)
        self.on_refused, self.reload_s = on_refused, reload_s
        self.allowed = load_allowlist(keys)
        self.signature = _allowlist_signature(keys)
        self.failed = False
        """Set before the guard asks the proxy to stop for good: the proxy must not run unguarded."""
        self.refused = 0
        self._bound = threading.Event()
        self._serving = False
        self._halt = threading.Event()
        self._bind_error: zmq.ZMQError | None = None
        self._last_logged: dict[tuple[str, str], float] = {}

    def start_and_wait(self, timeout_s: float = 5.0) -> None:
        self.start()
        if not self._bound.wait(timeout_s):
            raise BusSecurityError("the bus guard did not start")
        if self._bind_error is not None:
            raise BusSecurityError(f"cannot bind the ZAP handler ({self._bind_error}): "
                                   "one secured proxy per ZeroMQ context") from self._bind_error
        if not self._serving:
            raise BusSecurityError("the bus guard stopped before it could check peers (see the log)")

    def halt(self) -> None:
        self._halt.set()

    def run(self) -> None:
        zap = self.ctx.socket(zmq.REP)
        control = self.ctx.socket(zmq.PAIR)
        monitors = [self.ctx.socket(zmq.PAIR) for _ in self.monitors]
        sockets = [zap, control, *monitors]
        for sock in sockets:
            sock.setsockopt(zmq.LINGER, 0)
        try:
            try:
                zap.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                self._bind_error = exc
                return
            control.connect(self.control)
            for sock, endpoint in zip(monitors, self.monitors, strict=True):
                sock.connect(endpoint)
            self._loop(zap, control, monitors)
        except zmq.ContextTerminated:
            pass
        except Exception as exc:
            log.error("bus_guard_failed", error=f"{type(exc).__name__}: {exc}")
            self.failed = True
            with contextlib.suppress(zmq.ZMQError):
                control.send(b"TERMINATE")
            # Keep the ZAP socket (unanswered requests stall handshakes) until the proxy has closed
            # its sockets: closing it first would let any key in for a moment.
            self._halt.wait(5)
        finally:
            self._bound.set()
            for sock in sockets:
                sock.close(0)

    def _loop(self, zap: zmq.Socket[bytes], control: zmq.Socket[bytes], monitors: list[zmq.Socket[bytes]]) -> None:
        poller = zmq.Poller()
        for sock in (zap, *monitors):
            poller.register(sock, zmq.POLLIN)
        self._serving = True
        self._bound.set()
        next_reload = time.monotonic() + self.reload_s
        while not self._halt.is_set():
            ready = dict(poller.poll(max(1, int(self.reload_s * 1000))))
            if zap in ready:
                zap.send_multipart(self._answer(zap.recv_multipart()))
            for sock in monitors:
                if sock in ready:
                    self._on_monitor_event(sock.recv_multipart())
            if time.monotonic() >= next_reload:
                next_reload = time.monotonic() + self.reload_s
                if self._reload():
                    control.send(b"TERMINATE")

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """A ZAP (RFC 27) reply: 200 for an allow-listed CURVE key, 400 for anything else."""
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"bad ZAP request", b"", b""]
        request_id, address, mechanism, credentials = request[1], request[3], request[5], request[6:]
        peer = address.decode("ascii", "replace")
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            self._refuse(Refusal(reason=f"mechanism {mechanism.decode('ascii', 'replace')}", peer=peer))
            return [b"1.0", request_id, b"400", b"CURVE only", b"", b""]
        key = z85.encode(credentials[0])
        name = self.allowed.get(key)
        if name is None:
            self._refuse(Refusal(reason="key not on the allow-list", peer=peer, key=key.decode("ascii")))
            return [b"1.0", request_id, b"400", b"unknown key", b"", b""]
        return [b"1.0", request_id, b"200", b"OK", name.encode(), b""]

    def _on_monitor_event(self, frames: list[bytes]) -> None:
        event = parse_monitor_message(frames)
        value = event["value"]
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            reason = "no CURVE keys (security mechanism mismatch)"
        elif value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            reason = "CURVE handshake failed (a wrong server key?)"
        elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            # Which side sees the mismatch first is a race: here the peer hung up mid-handshake.
            reason = f"handshake not completed ({os.strerror(value) if value < 0x10000000 else hex(value)})"
        else:
            reason = f"handshake broke the protocol (ZMTP error {value:#x})"
        self._refuse(Refusal(reason=reason, peer=f"on {event['endpoint'].decode('ascii', 'replace')}"))

    def _refuse(self, refusal: Refusal) -> None:
        self.refused += 1
        if self.on_refused is not None:
            try:
                self.on_refused(refusal)
            except Exception as exc:  # a listener's bug must not take the guard, and so the bus, down
                log.error("on_refused_failed", error=f"{type(exc).__name__}: {exc}")
        # libzmq does not retry after a refusal, but a peer restarted in a loop would flood the log.
        now = time.monotonic()
        if len(self._last_logged) > 10_000:  # keys are the peer's choice: bound what we remember
            self._last_logged.clear()
        if now - self._last_logged.get((refusal.peer, refusal.key), -60.0) >= 60.0:
            self._last_logged[(refusal.peer, refusal.key)] = now
            log.warning("refused_peer", peer=refusal.peer, reason=refusal.reason, key=refusal.key or None,
                        refused_total=self.refused)

    def _reload(self) -> bool:
        """Re-read the allow-list when its folder changed; True when a key was removed."""
        signature = _allowlist_signature(self.keys)
        if signature == self.signature:
            return False
        allowed = load_allowlist(self.keys)
        added = sorted(set(allowed.values()) - set(self.allowed.values()))
        removed = sorted(name for key, name in self.allowed.items() if key not in allowed)
        self.signature, self.allowed = signature, allowed
        log.info("allowlist_reloaded", added=added, removed=removed, allowed=len(allowed))
        return bool(removed)

