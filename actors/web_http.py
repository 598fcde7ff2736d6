"""What the browser gateway answers over plain HTTP(S) on its port: the page's few files, and the check on
the WebSocket's handshake that the page asking is the gateway's own (same origin).

The files live beside this module (actors/web_page/) and are read once at start; nothing else on disk can
be asked for (a path is looked up, never joined to a folder). Each answer carries a Content-Security-Policy
that lets the page load and connect only to the gateway itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

PAGE_DIR = Path(__file__).resolve().parent / "web_page"
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
              "/capture.js": ("capture.js", "text/javascript"), "/ring.js": ("ring.js", "text/javascript"),
              "/style.css": ("style.css", "text/css")}
SECURITY_HEADERS = [("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:"),
                    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("Cache-Control", "no-store")]
SOCKET_PATH = "/ws"

Pages = dict[str, tuple[bytes, str]]


def load_pages(cert: Path | None = None) -> Pages:
    """The page's files by URL path; with `cert`, its public certificate too (a phone may need to trust it)."""
    pages = {path: ((PAGE_DIR / name).read_bytes(), kind) for path, (name, kind) in PAGE_FILES.items()}
    if cert is not None:
        pages["/rocky-relay.crt"] = (cert.read_bytes(), "application/x-pem-file")
    return pages


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_refusal(host_header: str | None, loopback_only: bool) -> str:
    """Why a request naming `host_header` is refused; empty when it may pass. A gateway without a token takes
    only requests that name this machine: a site whose name was made to point at 127.0.0.1 (DNS rebinding)
    would otherwise be the page's own origin, and could drive the assistant from the user's browser."""
    if not loopback_only:
        return ""
    try:
        name = urlsplit(f"//{host_header or ''}").hostname
    except ValueError:  # a malformed port or bracket
        name = None
    return "" if name in LOOPBACK_NAMES else f"Host {str(host_header)[:60]!r} is not this machine's loopback name"


def answer(connection: ServerConnection, request: Request, pages: Pages, log: Any,
           loopback_only: bool = True) -> Response | None:
    """A file, a 404, a 403 for a socket asked for by another origin's page or a request for a name that is not
    loopback on a gateway without a token; None lets the handshake go on."""
    path = urlsplit(request.path).path
    if why := host_refusal(request.headers.get("Host"), loopback_only):
        log.warning("web_request_refused", why=why)
        return connection.respond(403, "this gateway answers to 127.0.0.1 or localhost only\n")
    if path == SOCKET_PATH:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("Host"):
            log.warning("web_socket_refused", why="another origin", origin=origin[:100])
            return connection.respond(403, "a page of another origin may not use this gateway\n")
        return None
    if path not in pages:
        return connection.respond(404, "not found\n")
    body, kind = pages[path]
    return Response(200, "OK", Headers([("Content-Type", kind), ("Content-Length", str(len(body))),
                                        *SECURITY_HEADERS]), body)
