"""`rocky-relay keys`, and what the launcher takes from the key store: the command line over bus/keys.py.

The store itself (pairs, allow-list, bundles, who may read them) is bus security and lives in bus/keys.py
and bus/key_access.py; here are only the subcommand and the satellite's session bound to its key.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zmq.auth import load_certificate

from bus.key_access import SERVICE_GROUP, group_name, service_gid
from bus.keys import KeyStoreError, add_client, init_store, install_bundle, list_clients, revoke_client
from bus.security import CLIENTS_DIR, DEFAULT_KEYS_DIR, PUBLIC_SUFFIX, SERVER, BusSecurityError, CurveKeys

if TYPE_CHECKING:
    from launch.config import Config


def bind_session_to_key(config: Config, keys: CurveKeys | None) -> None:
    """A satellite speaks for one session, its key's name (the server's proxy drops anything else it sends):
    an empty [satellite] session becomes that name, a different one is refused now rather than silenced."""
    from launch.config import ConfigError

    if keys is None or keys.name == SERVER:
        return
    session = config.satellite.session
    if session and session != keys.name:
        raise ConfigError(f"satellite.session = {session!r}, but this satellite's key is {keys.name!r}: the server "
                          f"lets a key speak only for the session of its name; set satellite.session = "
                          f"{keys.name!r} (or leave it empty), or make the key with `rocky-relay keys add {session}`")
    config.satellite.session = config.section("button").session = config.section("leds").session = keys.name


def cmd_keys(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser()
    try:
        if args.keys_command == "init":
            public = init_store(root, args.force)
            print(f"server key pair in {root}; allow-list in {root / CLIENTS_DIR}/ (empty)")
            print(f"server public key: {public.decode()}")
            print(f'set [security] keys_dir = "{args.dir}" in the config, then `rocky-relay keys add NAME`')
        elif args.keys_command == "add":
            bundle = add_client(root, args.name, args.force)
            print(f"{args.name!r} allowed; its bundle (secret key inside): {bundle}")
            print(f"copy it to the satellite, run `rocky-relay keys install {bundle.name}` there, "
                  "then delete it here")
        elif args.keys_command == "revoke":
            revoke_client(root, args.name)
            print(f"{args.name!r} revoked; a running proxy drops it within a few seconds")
        elif args.keys_command == "list":
            clients = list_clients(root)
            for client, client_key in clients:
                print(f"{client:24s} {client_key}")
            if not clients:
                print(f"no satellites allowed in {root / CLIENTS_DIR}")
        elif args.keys_command == "show-server":
            print(load_certificate(root / (SERVER + PUBLIC_SUFFIX))[0].decode())
        else:  # install
            gid = service_gid(args.group)
            name = install_bundle(Path(args.bundle), root, args.force, gid)
            readers = f"its owner and group {group_name(gid)}" if gid >= 0 else "its owner only"
            print(f"keys of satellite {name!r} installed in {root} (readable by {readers}); "
                  f'set [security] keys_dir = "{args.dir}" in the config')
    except (KeyStoreError, BusSecurityError, OSError, ValueError, tarfile.TarError) as exc:
        print(f"rocky-relay keys {args.keys_command}: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: Any) -> None:
    """Add the `keys` subcommand to the `rocky-relay` parser's subparsers."""
    keys = subparsers.add_parser("keys", help="CURVE keys for a bus across hosts: server pair, satellites, "
                                              "allow-list")
    keys.add_argument("--dir", default=str(DEFAULT_KEYS_DIR), help=f"key store (default: {DEFAULT_KEYS_DIR})")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    init = actions.add_parser("init", help="create the server key pair and an empty allow-list")
    init.add_argument("--force", action="store_true", help="replace an existing server key")
    add = actions.add_parser("add", help="create a satellite's key pair, allow it, write its bundle")
    add.add_argument("name")
    add.add_argument("--force", action="store_true", help="give an allowed satellite a new key pair")
    revoke = actions.add_parser("revoke", help="take a satellite off the allow-list")
    revoke.add_argument("name")
    actions.add_parser("list", help="the allowed satellites and their public keys")
    actions.add_parser("show-server", help="the server's public key")
    install = actions.add_parser("install", help="on a satellite: install the bundle made by `keys add`")
    install.add_argument("bundle")
    install.add_argument("--force", action="store_true", help="replace keys already installed")
    install.add_argument("--group", help=f"group that may read the keys (default as root: {SERVICE_GROUP}, "
                                         "the service's, when it exists; empty: the owner only)")
    keys.set_defaults(func=cmd_keys)
