"""The browser gateway's settings, its limits on a tab, and its pairing state: the token and the certificate.

On loopback the page is plain `http://127.0.0.1` (a secure context already, so the microphone works) and
needs no token: the gateway refuses any page of another origin. Off loopback (`--lan`) a browser grants the
microphone only to HTTPS, so the gateway serves HTTPS with a certificate it generated itself, and a socket
gets no bus access before it shows the pairing token. Both live in `state_dir`, 0600, made on first use;
the token never goes to a log, a record or the bus (the `web` command prints it once, in a URL fragment,
which browsers never send to a server).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bus.privacy import PRIVATE_MODE

TOKEN_FILE = "pairing-token"
CERT_FILE = "web-cert.pem"
KEY_FILE = "web-key.pem"
SESSION_PREFIX = "web-"
"""Every tab's session starts with it, then 16 random hex digits made by the gateway: a page cannot choose it."""
TEXT_PER_S, AUDIO_PER_S = 20.0, 100.0
"""Frames a page may send a second (twice that in a burst); it sends ~2 text and 25 audio frames a second.
One tab's flood must not spend the gateway's budget at the bus proxy, which all tabs share."""


class Budget:
    """A token bucket: `per_s` a second, up to twice that saved."""

    def __init__(self, per_s: float) -> None:
        self.per_s, self.left, self.at = per_s, 2 * per_s, time.monotonic()

    def take(self) -> bool:
        t = time.monotonic()
        self.left, self.at = min(2 * self.per_s, self.left + (t - self.at) * self.per_s), t
        if self.left < 1:
            return False
        self.left -= 1
        return True


@dataclass
class WebSettings:
    host: str = "127.0.0.1"
    """Address the page and its WebSocket listen on; anything but loopback (0.0.0.0 for the LAN) forces https."""
    port: int = 8780
    """TCP port of the page (https://HOST:PORT/ or http://127.0.0.1:PORT/); 0: any free one (its Ready says which)."""
    https: bool = False
    """HTTPS with the generated certificate and the pairing token, also on loopback (always on off loopback)."""
    state_dir: str = "~/.config/rocky-relay/web"
    """Where the pairing token, the certificate and its key are kept (0600, made on first use)."""
    max_tabs: int = 8
    """Browser tabs connected at once; one more is refused (each tab is its own session)."""
    max_hold_s: float = 60.0
    """A press held this long is released by the gateway (a stuck key must not record forever)."""

    def secure(self) -> bool:
        """Whether this gateway serves HTTPS and asks for the pairing token."""
        return self.https or not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def state_path(settings: WebSettings) -> Path:
    path = Path(os.path.expanduser(settings.state_dir))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` 0600 with `data`; a second writer racing us loses (O_EXCL) and reads ours instead."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def pairing_token(settings: WebSettings) -> str:
    """The token a page must show (made on first use: 32 random bytes, URL-safe)."""
    path = state_path(settings) / TOKEN_FILE
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first: read theirs
            _write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


def token_matches(given: object, expected: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a guess was right."""
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def lan_addresses() -> list[str]:
    """This host's addresses as a phone on the LAN would use them (the route to a private address; no packet
    is sent), plus loopback."""
    found = ["127.0.0.1"]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        found.append(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    return list(dict.fromkeys(found))


def certificate(settings: WebSettings) -> tuple[Path, Path]:
    """(cert, key) files: made on first use, self-signed for this host's name and addresses."""
    folder = state_path(settings)
    cert, key = folder / CERT_FILE, folder / KEY_FILE
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Rocky Relay on {socket.gethostname()}")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in lan_addresses()]
    now = datetime.datetime.now(datetime.UTC)
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=825))
             .add_extension(x509.SubjectAlternativeName(alt), critical=False)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .sign(private, hashes.SHA256()))
    for path in (cert, key):
        path.unlink(missing_ok=True)
    _write_private(key, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    _write_private(cert, built.public_bytes(serialization.Encoding.PEM))
    return cert, key


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate (DER), as a phone's certificate viewer shows it."""
    import ssl

    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
