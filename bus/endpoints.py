"""Bind endpoints of the bus: is one already served (by another set's proxy), and what to tell the user."""

from __future__ import annotations

import errno
import socket

from bus.sockets import BusAddress


class AddressInUse(RuntimeError):
    """The set's proxy cannot have its bus: another proxy already serves those addresses."""


def endpoint_in_use(endpoint: str) -> bool:
    """Whether something already listens on a bind endpoint: tcp://HOST:PORT (a test bind) or ipc://PATH
    (a test connect; a file left by a dead proxy refuses it)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(rest)
            return True
        except OSError:
            return False
        finally:
            probe.close()
    if scheme != "tcp":
        return False
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq binds: TIME_WAIT is no owner
        probe.bind(("" if host in ("*", "0.0.0.0") else host, int(port)))
        return False
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    except ValueError:
        return False  # not a port number: the proxy's own bind reports it
    finally:
        probe.close()


def address_in_use(address: BusAddress) -> str:
    """Why a second proxy on the same addresses is refused, and what the user can do instead."""
    return (f"address in use: {address.pub_addr} / {address.sub_addr} is already served by another bus proxy "
            "(a rocky-relay set is running there): stop it, use `--attach` to drive it, or set other "
            "bus.pub / bus.sub")
