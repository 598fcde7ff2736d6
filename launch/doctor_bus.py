"""`rocky-relay doctor`'s bus checks: the pub/sub addresses (parsed, resolved, free or a running proxy) and
the CURVE keys a bus off this machine needs. launch/doctor.py runs them with the others.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bus.sockets import BusAddress
from launch.doctor import Finding

if TYPE_CHECKING:
    from launch.config import Config


@dataclass
class Endpoint:
    setting: str
    address: str
    host: str = ""
    port: int = 0
    ip: str = ""
    path: str = ""  # of an ipc:// socket


def _parse(setting: str, address: str) -> Endpoint | Finding:
    end = Endpoint(setting, address)
    fix = (f"--set {setting}=tcp://127.0.0.1:{7750 if setting == 'bus.pub' else 7751} (or [bus] in the config, "
           "or ROCKY_RELAY_BUS=host[:port])")
    scheme, sep, rest = address.partition("://")
    if scheme == "ipc" and rest:
        end.path = rest
        return end
    host, _, port = rest.rpartition(":")
    if scheme != "tcp" or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return Finding("bus", "fail", f"{setting} = {address!r}: expected tcp://HOST:PORT or ipc://PATH", fix)
    end.host, end.port = host.strip("[]"), int(port)
    try:
        end.ip = str(socket.getaddrinfo(end.host, end.port, type=socket.SOCK_STREAM)[0][4][0])
    except socket.gaierror as exc:
        return Finding("bus", "fail", f"{setting} = {address!r}: cannot resolve {end.host!r} ({exc})", fix)
    return end


def _port_state(end: Endpoint) -> str:
    """free, in use, or remote (not an address of this machine)."""
    family = socket.AF_INET6 if ":" in end.ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count as in use
        try:
            sock.bind((end.ip, end.port))
            return "free"
        except OSError as exc:
            return "remote" if exc.errno == errno.EADDRNOTAVAIL else "in use"


def _secured(config: Config) -> BusAddress:
    """The bus address with this peer's CURVE keys when [security] keys_dir names a store."""
    from launch.config import bus_address

    return bus_address(config)


def _proxy_answers(config: Config) -> bool:
    import zmq

    from bus.handshake import prove_path
    from bus.sockets import BusClient

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        client = BusClient(_secured(config), ctx=ctx, name="doctor")
    except (ValueError, zmq.ZMQError):  # no keys for a LAN bus: the keys section says why
        ctx.term()
        return False
    try:
        prove_path(client, timeout_s=1.5)
        return True
    except TimeoutError:
        return False
    finally:
        client.close()
        ctx.term()


def check_bus(config: Config) -> list[Finding]:
    parsed = [_parse("bus.pub", config.bus.pub), _parse("bus.sub", config.bus.sub)]
    findings = [p for p in parsed if isinstance(p, Finding)]
    ends = [p for p in parsed if isinstance(p, Endpoint)]
    if findings:
        return findings
    states = {e.setting: ("exists" if Path(e.path).exists() else "free") if e.path else _port_state(e) for e in ends}
    proxy = any(s != "free" for s in states.values()) and _proxy_answers(config)
    for end in ends:
        state, where = states[end.setting], end.address
        if proxy:
            findings.append(Finding("bus", "ok", f"{end.setting} {where}: a Rocky Relay proxy is running there (fine)"))
        elif state == "free":
            findings.append(Finding("bus", "ok", f"{end.setting} {where}: free; `rocky-relay launch` binds it"))
        elif state == "remote":
            findings.append(Finding("bus", "warn", f"{end.setting} {where}: no proxy answers on {end.host}",
                                    f"start `rocky-relay launch server` on {end.host}, or check the address/firewall"))
        else:
            findings.append(Finding("bus", "fail", f"{end.setting} {where}: in use by something that is not a "
                                    "Rocky Relay proxy", f"free it (ss -ltnp 'sport = :{end.port}') or move the bus: "
                                    "--set bus.pub=tcp://127.0.0.1:7760 --set bus.sub=tcp://127.0.0.1:7761"))
    return findings


def check_keys(config: Config) -> list[Finding]:
    keys_dir = config.security.keys_dir
    from bus.security import BusSecurityError, is_local_endpoint

    local = all(is_local_endpoint(end) for end in (config.bus.pub, config.bus.sub))
    if not keys_dir:
        if local:
            return [Finding("keys", "ok", "loopback bus: no keys needed")]
        return [Finding("keys", "fail", "the bus leaves this machine without CURVE keys: every actor refuses it",
                        "rocky-relay keys init (server) / keys install BUNDLE (satellite), then "
                        "--set security.keys_dir=~/.config/rocky-relay/keys")]
    try:
        curve = _secured(config).curve
    except (BusSecurityError, OSError, ValueError) as exc:
        return [Finding("keys", "fail", f"keys in {keys_dir}: {exc}", "rocky-relay keys --help")]
    assert curve is not None  # keys_dir is set, so secure_address loaded a pair or raised
    role = "server pair (runs the proxy)" if curve.allow_dir else f"satellite pair {curve.name!r}"
    return [Finding("keys", "ok", f"CURVE keys in {keys_dir}: {role}")]
