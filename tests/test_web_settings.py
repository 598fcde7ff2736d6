"""The gateway's pairing state and the `web` command's printing: no processes, no sockets."""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path

from cryptography import x509

from actors.web_settings import WebSettings, certificate, fingerprint, is_loopback, pairing_token, token_matches
from launch.web_cmd import announce, page_urls


def test_only_loopback_is_plain_http() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "192.168.1.20", "::", "example.com", "")] == [False] * 5
    assert not WebSettings().secure() and WebSettings(https=True).secure() and WebSettings(host="0.0.0.0").secure()


def test_the_token_is_made_once_private_and_compared_whole(tmp_path: Path) -> None:
    settings = WebSettings(state_dir=str(tmp_path / "web"))
    token = pairing_token(settings)
    assert len(token) >= 40 and pairing_token(settings) == token
    assert (tmp_path / "web" / "pairing-token").stat().st_mode & 0o777 == 0o600
    assert token_matches(token, token)
    assert not any(token_matches(guess, token) for guess in (token[:-1], token + "x", "", None, 7, [token]))
    assert not token_matches("", "")  # no token made: nothing matches


def test_the_certificate_names_this_host_and_is_kept(tmp_path: Path) -> None:
    settings = WebSettings(state_dir=str(tmp_path))
    cert, key = certificate(settings)
    assert {p.stat().st_mode & 0o777 for p in (cert, key)} == {0o600}
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    before = fingerprint(cert)
    assert certificate(settings) == (cert, key) and fingerprint(cert) == before and len(before) == 95


def test_the_pairing_url_goes_to_a_terminal_only(tmp_path: Path) -> None:
    settings = WebSettings(host="0.0.0.0", port=8780, state_dir=str(tmp_path))
    token = pairing_token(settings)
    assert all(url.startswith("https://") and url.endswith(f":8780/#token={token}")
               for url in page_urls(settings, with_token=True))
    piped = io.StringIO()
    announce(settings, piped)
    assert token not in piped.getvalue() and "not a terminal" in piped.getvalue()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    announce(settings, shown)
    assert f"#token={token}" in shown.getvalue() and "SHA-256" in shown.getvalue()
    local = io.StringIO()
    announce(WebSettings(state_dir=str(tmp_path / "none")), local)
    assert "http://127.0.0.1:8780/" in local.getvalue() and not (tmp_path / "none" / "pairing-token").exists()
