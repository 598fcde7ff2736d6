"""`rocky-relay web`: the browser page and its gateway, with the server's actors behind it.

Starts the `server` set plus the `web` gateway (or only the gateway, when a set already serves the bus) and
prints where to open the page. `--lan` listens on every interface, which makes it HTTPS with a self-signed
certificate and a pairing token: the pairing URL (the token in its fragment) is printed here, on a terminal
only, never to a log; `--pair` prints it again without starting anything.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from actors.web_settings import WebSettings, certificate, fingerprint, is_loopback, lan_addresses, pairing_token
from launch.attach import find_running, load_command_config, wanted_roles
from launch.config import actor_set, settings_for

if TYPE_CHECKING:
    from launch.config import Config

SET_NAME = "web"


def register(sub: Any) -> None:
    web = sub.add_parser("web", help="the browser page: hold to talk in a tab (a phone on the LAN with --lan)")
    web.add_argument("--lan", action="store_true",
                     help="listen on every interface (web.host=0.0.0.0): HTTPS with a generated certificate and "
                          "a pairing token")
    web.add_argument("--pair", action="store_true", help="print the pairing URL again and exit")
    web.set_defaults(func=cmd_web)


def page_urls(settings: WebSettings, with_token: bool) -> list[str]:
    """Where a browser finds the page; with the token in the fragment (which browsers never send on)."""
    if not settings.secure():
        return [f"http://{settings.host}:{settings.port}/"]
    hosts = [settings.host] if not settings.host.startswith("0.") and settings.host != "::" else lan_addresses()
    fragment = f"#token={pairing_token(settings)}" if with_token else ""
    return [f"https://{host}:{settings.port}/{fragment}" for host in hosts if with_token or not is_loopback(host)]


def announce(settings: WebSettings, out: Any = sys.stdout) -> None:
    if not settings.secure():
        print(f"open {page_urls(settings, False)[0]} in a browser on this machine; hold the button or the space "
              "bar to talk", file=out)
        return
    cert, _key = certificate(settings)
    print(f"certificate {cert} (self-signed; SHA-256 {fingerprint(cert)})", file=out)
    if not out.isatty():  # a log or a journal must never hold the token
        print(f"pairing URL not printed (output is not a terminal): `rocky-relay web --pair` on a terminal, or "
              f"the token in {settings.state_dir}/pairing-token", file=out)
        return
    print("open on your phone (same network; accept the certificate warning once):", file=out)
    for url in page_urls(settings, True):
        print(f"  {url}", file=out)


def cmd_web(args: argparse.Namespace) -> int:
    config = load_command_config(args, ["web.host=0.0.0.0"] if args.lan else [])
    settings: WebSettings = settings_for("web", config)
    if args.pair:
        if not settings.secure():
            print("this gateway is on loopback without https: no pairing token (use --lan)", file=sys.stderr)
            return 2
        announce(settings)
        return 0
    names = gateway_set(config)
    announce(settings)
    from launch.serve_cmd import serve

    config.sets[SET_NAME] = names
    return serve(config, SET_NAME, "web")


def gateway_set(config: Config) -> list[str]:
    """The gateway alone when a set already serves the bus, else the server set and the gateway."""
    server = actor_set(config, "server")
    running = find_running(config, wanted_roles(config, "server"))
    return ["web"] if running is not None else [*server, "web"]
