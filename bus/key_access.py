"""Who may read an installed key store: the service's group when root installs it, and what to do when not."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from bus.security import SECRET_SUFFIX

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
