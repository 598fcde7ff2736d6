"""Who may read an installed key store: the service's group when root installs it, and what to do when not."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Any

from bus.security import SECRET_SUFFIX, SERVER, CurveKeys

SERVICE_GROUP = "rocky-relay"
"""The group of pi/rocky-relay-edge.service: keys that root installs must be readable by it."""


def service_gid(group: str | None) -> int:
    """The group that may read installed keys: `group`; when none is given and root installs them, the
    service's own (the unit runs as rocky-relay) if it exists; else -1 (only the owner reads them)."""
    if group is None:
        if os.geteuid() != 0:
            return -1
        group = SERVICE_GROUP
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return -1
    if not group:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"--group {group}: no such group (pi/install.sh creates {SERVICE_GROUP})") from None


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def unreadable_store(root: Path, exc: PermissionError) -> str:
    """What to do when this user may not read the key store (a service user, the keys installed by root)."""
    try:
        who = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        who = str(os.geteuid())
    return (f"user {who} may not read {exc.filename or root} (permission denied): as root, run "
            f"`rocky-relay keys --dir {root} install --group {group_name(os.getegid())} --force BUNDLE` again, "
            f"or `chgrp -R {group_name(os.getegid())} {root} && chmod 750 {root} && "
            f"chmod 640 {root}/*{SECRET_SUFFIX}`")


def bind_session_to_key(config: dict[str, Any], keys: CurveKeys | None) -> None:
    """A satellite speaks for one session, its key's name (the server's proxy drops anything else it sends):
    an empty [satellite] session becomes that name, a different one is refused now rather than silenced."""
    from launch.config import ConfigError

    if keys is None or keys.name == SERVER:
        return
    session = config["satellite"]["session"]
    if session and session != keys.name:
        raise ConfigError(f"satellite.session = {session!r}, but this satellite's key is {keys.name!r}: the server "
                          f"lets a key speak only for the session of its name; set satellite.session = "
                          f"{keys.name!r} (or leave it empty), or make the key with `rocky-relay keys add {session}`")
    config["satellite"]["session"] = config["button"]["session"] = config["leds"]["session"] = keys.name
