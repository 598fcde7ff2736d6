"""The CURVE key store of a bus that leaves this machine (the `rocky-relay keys` command is launch/keys_cmd.py).

On the server: `keys init` makes the server pair and an empty allow-list, `keys add NAME` a satellite's
pair (its public key joins the allow-list; a bundle with its secret key and the server's public key is
written for the satellite), `keys revoke NAME` takes it off the list (a running proxy notices within a
second and drops the peer). On the satellite: `keys install BUNDLE`.

Key store (default ~/.config/rocky-relay/keys, mode 0700):

    server.key, server.key_secret   the proxy's key pair (on the server only)
    clients/NAME.key                public keys allowed on the bus: the allow-list
    bundles/NAME.tar.gz             NAME.key_secret + server.key, to copy to satellite NAME (then delete)
    NAME.key_secret                 on a satellite: its own pair, with the server's public server.key beside it

A process whose store holds server.key_secret runs on the server and connects with the server pair,
which the proxy always allows.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
from zmq.auth import load_certificate

from bus.key_access import unreadable_store
from bus.security import (
    CLIENTS_DIR,
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    SERVER,
    BusSecurityError,
    CurveKeys,
)

if TYPE_CHECKING:
    from bus.sockets import BusAddress

BUNDLES_DIR = "bundles"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeyStoreError(Exception):
    """A key store operation that was refused; the message says why and what to do."""


def secure_address(address: BusAddress, keys_dir: str | Path | None, name: str | None = None) -> BusAddress:
    """`address` with the keys of `keys_dir` (unchanged when no folder is configured)."""
    if not keys_dir:
        return address
    return replace(address, curve=load_keys(keys_dir, name))


def load_keys(keys_dir: str | Path, name: str | None = None) -> CurveKeys:
    """The server pair when the store holds it, else the satellite pair `name` (or the only one there)."""
    root = Path(keys_dir).expanduser()
    try:
        return _load_keys(root, name)
    except PermissionError as exc:
        raise BusSecurityError(unreadable_store(root, exc)) from exc


def _load_keys(root: Path, name: str | None) -> CurveKeys:
    if not root.is_dir():
        raise BusSecurityError(f"no key store at {root}: run `rocky-relay keys init` (server) or "
                               "`rocky-relay keys install BUNDLE` (satellite)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise PermissionError(13, "Permission denied", str(root))
    server_secret = root / (SERVER + SECRET_SUFFIX)
    if server_secret.is_file() and name in (None, SERVER):
        public, secret = _read_pair(server_secret)
        return CurveKeys(server_public=public, public=public, secret=secret, allow_dir=root / CLIENTS_DIR)
    if name is None:
        names = sorted(p.name[: -len(SECRET_SUFFIX)] for p in root.glob("*" + SECRET_SUFFIX))
        if len(names) != 1:
            raise BusSecurityError(
                f"{root} holds {'no key pair' if not names else 'key pairs ' + ', '.join(names)}: "
                "install a satellite bundle (`rocky-relay keys install`) or set [security] name")
        name = names[0]
    public, secret = _read_pair(root / (name + SECRET_SUFFIX))
    server_public = root / (SERVER + PUBLIC_SUFFIX)
    if not server_public.is_file():
        raise BusSecurityError(f"{server_public} is missing: copy it from the server (it is in the bundle)")
    return CurveKeys(server_public=load_certificate(server_public)[0], public=public, secret=secret, name=name)


def _read_pair(path: Path) -> tuple[bytes, bytes]:
    if not path.is_file():
        raise BusSecurityError(f"{path} is missing: create it with `rocky-relay keys`")
    # Like ssh, refuse a secret others can read; group read is allowed for a service's own group.
    if path.stat().st_mode & 0o027:
        raise BusSecurityError(f"{path} is open to other users: `chmod 600 {path}` (or 640 for a service group)")
    public, secret = load_certificate(path)
    if secret is None or zmq.curve_public(secret) != public:
        raise BusSecurityError(f"{path} does not hold a matching CURVE key pair")
    return public, secret


def _cert_text(name: str, public: bytes, secret: bytes | None = None) -> bytes:
    """A ZeroMQ certificate in the format zmq.auth.load_certificate reads."""
    kind = "**Secret** Certificate: never copy it anywhere but its own machine" if secret else "Public Certificate"
    lines = [f"#   ZeroMQ CURVE {kind}", f"#   rocky-relay {name}, {datetime.now():%Y-%m-%d %H:%M}", "",
             "metadata", f'    name = "{name}"', "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return ("\n".join(lines) + "\n").encode()


def _write(path: Path, data: bytes, mode: int, force: bool, gid: int = -1) -> None:
    """Write atomically with `mode` (and group `gid`) from the first byte: no window where a secret is
    readable by others."""
    if path.exists() and not force:
        raise KeyStoreError(f"{path} exists; --force replaces it")
    tmp = path.with_name(f".{path.name}.tmp")  # not *.key: a reloading proxy never reads it half-written
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o700)
    try:
        with os.fdopen(fd, "wb") as f:
            if gid >= 0:
                os.fchown(f.fileno(), -1, gid)
            f.write(data)
        os.chmod(tmp, mode)  # os.open's mode is filtered by the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _private_dir(path: Path, gid: int = -1) -> Path:
    """`path` as a folder only its owner (and group `gid`, when given, to read) may enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if gid >= 0:
        os.chown(path, -1, gid)
    os.chmod(path, 0o750 if gid >= 0 else 0o700)
    return path


def _check_name(name: str) -> None:
    # A satellite's name is also the one session it may speak for: never the server's own ("local").
    if not NAME_RE.fullmatch(name) or name in (SERVER, "local"):
        raise KeyStoreError(f"{name!r}: a satellite name is letters, digits, '.', '_' or '-' "
                            f"(at most 64, not {SERVER!r} nor 'local')")


def init_store(root: Path, force: bool = False) -> bytes:
    """Create the server key pair and the empty allow-list; the server's public key."""
    root = _private_dir(root.expanduser())
    if (root / (SERVER + SECRET_SUFFIX)).exists() and not force:
        raise KeyStoreError(f"{root} already holds a server key; --force replaces it, "
                            "and then every satellite needs a new bundle")
    public, secret = zmq.curve_keypair()
    _write(root / (SERVER + SECRET_SUFFIX), _cert_text(SERVER, public, secret), 0o600, force)
    _write(root / (SERVER + PUBLIC_SUFFIX), _cert_text(SERVER, public), 0o644, force)
    _private_dir(root / CLIENTS_DIR)
    return public


def add_client(root: Path, name: str, force: bool = False) -> Path:
    """Create satellite `name`'s pair, allow its public key; the bundle (tar.gz) to copy to it."""
    _check_name(name)
    root = root.expanduser()
    server = load_keys(root, SERVER) if (root / (SERVER + SECRET_SUFFIX)).exists() else None
    if server is None or server.allow_dir is None:
        raise KeyStoreError(f"{root} holds no server key: run `rocky-relay keys init` first")
    allowed = _private_dir(server.allow_dir) / (name + PUBLIC_SUFFIX)
    if allowed.exists() and not force:
        raise KeyStoreError(f"{name!r} is already allowed; --force gives it a new key pair")
    public, secret = zmq.curve_keypair()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data, mode in ((name + SECRET_SUFFIX, _cert_text(name, public, secret), 0o600),
                                   (SERVER + PUBLIC_SUFFIX, _cert_text(SERVER, server.public), 0o644)):
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), mode, int(datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(data))
    bundle = _private_dir(root / BUNDLES_DIR) / f"{name}.tar.gz"
    _write(bundle, buffer.getvalue(), 0o600, force=True)
    _write(allowed, _cert_text(name, public), 0o644, force)  # last: the key is live from here on
    return bundle


def revoke_client(root: Path, name: str) -> None:
    """Take `name` off the allow-list and delete its bundle."""
    _check_name(name)
    root = root.expanduser()
    allowed = root / CLIENTS_DIR / (name + PUBLIC_SUFFIX)
    if not allowed.exists():
        raise KeyStoreError(f"{name!r} is not on the allow-list in {root / CLIENTS_DIR}")
    allowed.unlink()
    (root / BUNDLES_DIR / f"{name}.tar.gz").unlink(missing_ok=True)


def list_clients(root: Path) -> list[tuple[str, str]]:
    """(name, public key) of every allowed satellite."""
    folder = root.expanduser() / CLIENTS_DIR
    return [(p.name[: -len(PUBLIC_SUFFIX)], load_certificate(p)[0].decode())
            for p in sorted(folder.glob("*" + PUBLIC_SUFFIX))]


def install_bundle(bundle: Path, root: Path, force: bool = False, gid: int = -1) -> str:
    """Put a satellite bundle's two files into `root` (readable by group `gid` when given); its name."""
    root = root.expanduser()
    if (root / (SERVER + SECRET_SUFFIX)).exists():
        raise KeyStoreError(f"{root} is the server's key store; install the bundle on the satellite")
    files: dict[str, bytes] = {}
    with tarfile.open(bundle, mode="r:gz") as tar:  # read by name, never extracted: no path tricks
        for member in tar.getmembers():
            stem = member.name.removesuffix(SECRET_SUFFIX)
            wanted = member.name == SERVER + PUBLIC_SUFFIX or (
                stem != member.name and stem != SERVER and NAME_RE.fullmatch(stem) is not None)
            extracted = tar.extractfile(member) if member.isfile() and wanted else None
            if extracted is None:
                raise KeyStoreError(f"{bundle}: unexpected entry {member.name!r}; not a rocky-relay bundle")
            files[member.name] = extracted.read()
    secrets = [n for n in files if n.endswith(SECRET_SUFFIX)]
    if len(secrets) != 1 or SERVER + PUBLIC_SUFFIX not in files:
        raise KeyStoreError(f"{bundle}: a bundle holds one NAME{SECRET_SUFFIX} and {SERVER}{PUBLIC_SUFFIX}")
    _private_dir(root, gid)
    _write(root / secrets[0], files[secrets[0]], 0o640 if gid >= 0 else 0o600, force, gid)
    _write(root / (SERVER + PUBLIC_SUFFIX), files[SERVER + PUBLIC_SUFFIX], 0o644, force)
    name = secrets[0].removesuffix(SECRET_SUFFIX)
    load_keys(root, name)  # a bundle whose keys do not load is no use: say so now
    return name
