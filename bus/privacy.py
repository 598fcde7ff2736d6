"""Privacy: credentials out of everything printed, and private modes for what a turn leaves on disk.

Redaction covers logs, records, the journal and error text on the bus.

Two kinds are removed: the user:password part of any URL (`http://me:pw@host/` -> `http://***@host/`),
and the values of settings that are secrets (any key named like api_key, token, password, secret), which
entry points `remember` from the config (and the environment) before anything is printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

PRIVATE_MODE = 0o600
"""Records, journals, reply WAVs, actor logs and launch configs: what was said is the owner's alone."""
PRIVATE_UMASK = 0o077
"""Entry points set it, so whatever else they and their children create is private too."""
MASK = "***"
SECRET_KEY = re.compile(r"(api_?key|token|password|passwd|secret)", re.IGNORECASE)
"""Setting names whose values are credentials."""
SECRET_ENV = ("ROCKY_RELAY_LLM_API_KEY",)
"""Environment variables that hold credentials."""
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'?#]+@")
_USERINFO_PARTS = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://([^/\s@\"'?#]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")
MIN_SECRET_LEN = 4
"""Shorter values are not masked: replacing every "1" or "on" would garble text and protect nothing."""

_known: set[str] = set()


def remember(value: str) -> None:
    """Mask `value` wherever it appears from now on (in this process)."""
    if len(value) >= MIN_SECRET_LEN:
        _known.add(value)


def remember_config(config: Mapping[str, Any]) -> None:
    """Remember every secret setting of a config (`{section: {key: value}}`) and of the environment."""
    for section in config.values():
        if isinstance(section, Mapping):
            for key, value in section.items():
                if not isinstance(value, str):
                    continue
                if SECRET_KEY.search(str(key)):
                    remember(value)
                for userinfo in _USERINFO_PARTS.findall(value):  # a password may be printed on its own too
                    remember(userinfo.partition(":")[2])
    for name in SECRET_ENV:
        if value := os.environ.get(name, ""):
            remember(value)


def redact(text: str) -> str:
    """`text` with URL credentials, bearer tokens and remembered secrets masked."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _BEARER.sub(rf"\1 {MASK}", text)
    for secret in sorted(_known, key=len, reverse=True):  # longest first: one secret may contain another
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """`value` (str, or dicts and lists of them) with every string redacted; other types as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def structlog_processor(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """A structlog processor: every string in a log entry redacted (place it before the renderer)."""
    return {key: redact_value(value) for key, value in event.items()}
