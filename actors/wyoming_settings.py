"""The wyoming actor's settings (actors/wyoming_actor.py is the actor): where it listens, how it is found."""

from __future__ import annotations

from dataclasses import dataclass

SESSION_PREFIX = "wyoming-"
"""Every session of a Wyoming operation begins so (the logger's and the actor's way to tell them)."""


@dataclass
class WyomingSettings:
    host: str = "0.0.0.0"
    """Address the Wyoming server listens on; 0.0.0.0: every interface, so Home Assistant on another machine
    reaches it (the protocol has no authentication: keep the port inside your LAN)."""
    port: int = 10700
    """TCP port (Home Assistant: Settings -> Devices & services -> Add -> Wyoming Protocol, this host and
    port); 0 takes any free port (tests)."""
    zeroconf: bool = True
    """Announce the server as `_wyoming._tcp.local.` over mDNS, so Home Assistant discovers it by itself."""
    zeroconf_address: str = ""
    """IPv4 address the announcement gives; empty: this machine's address on the interface that routes to
    the mDNS group (set it when that is not the LAN Home Assistant is on)."""
    zeroconf_name: str = "rocky-relay"
    """Service instance name in the announcement (what Home Assistant shows when it discovers it)."""
    language: str = "en"
    """Language the STT, LLM and voice are offered for in `info`."""
    reply_hold_s: float = 5.0
    """A conversation reply's audio (already spoken by our TTS while the LLM went on) is kept this long for
    the `synthesize` request of the same words that Home Assistant sends next; then it is dropped."""
    op_timeout_s: float = 60.0
    """An operation whose bus side (transcript, reply, audio) shows no progress for this long ends with an
    `error` event to the client."""
    idle_timeout_s: float = 30.0
    """A client that goes quiet in the middle of an operation (after `audio-start` or `synthesize-start`)
    for this long is disconnected and its turn ended."""
    max_connections: int = 32
    """Clients served at once; one more is told so in an `error` event and disconnected."""
