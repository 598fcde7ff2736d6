"""`rocky-relay tap`: a live, readable view of the bus. Audio is summarised, never dumped.

Heartbeats (one a second per side) and mic frames (fifty a second while someone speaks) would bury
everything else, so they are hidden unless asked for: `--all`, or a topic prefix naming their kind
(`tap ctl.heartbeat`, `tap audio.in`). `--session` follows one satellite.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import datetime
from typing import Any, TextIO

from bus.codec import Envelope
from bus.messages import AudioFrame, Heartbeat, topic_for
from bus.sockets import BusAddress, BusClient

MAX_TEXT = 120
NOISY = (Heartbeat, AudioFrame)
"""Kinds hidden unless asked for."""


def shown(env: Envelope, prefix: str = "", show_all: bool = False, session: str = "") -> bool:
    """Whether tap prints `env`: of `session` (when given), and not noise unless asked for."""
    if session and env.msg.session != session:
        return False
    if show_all or not isinstance(env.msg, NOISY):
        return True
    return bool(prefix) and prefix.startswith(topic_for(env.msg))  # the prefix names that kind


def summarise(env: Envelope) -> dict[str, Any]:
    """The message's fields, with the PCM payload replaced by its size and duration."""
    fields = {f.name: getattr(env.msg, f.name) for f in dataclasses.fields(env.msg)}
    if env.msg.HAS_PAYLOAD:
        rate = fields.get("sample_rate") or 16000
        fields["payload"] = f"<pcm {len(env.payload)} B, {1000 * len(env.payload) / 2 / rate:.0f} ms>"
    return fields


def format_line(env: Envelope) -> str:
    fields = summarise(env)
    stamp = datetime.fromtimestamp(fields.pop("ts")).strftime("%H:%M:%S.%f")[:-3]
    where = f"{fields.pop('session')}/{fields.pop('turn')}"
    rest = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
    return f"{stamp} {env.topic:13s} {type(env.msg).__name__:11s} {where} {rest}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) and value.startswith("<pcm") else json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def tap(address: BusAddress, prefix: str = "", count: int = 0, as_json: bool = False,
        timeout_s: float = 0.0, out: TextIO = sys.stdout, show_all: bool = False, session: str = "") -> int:
    """Print messages whose topic starts with `prefix` (see `shown`) until Ctrl-C, `count` printed messages
    or `timeout_s`."""
    client = BusClient(address, (prefix,), name="tap")
    seen = 0
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        while (count == 0 or seen < count) and (deadline is None or time.monotonic() < deadline):
            env = client.recv(timeout_ms=200)
            if env is None or not shown(env, prefix, show_all, session):
                continue
            seen += 1
            if as_json:
                line = json.dumps({"topic": env.topic, "type": type(env.msg).__name__, **summarise(env)},
                                  default=str)
            else:
                line = format_line(env)
            out.write(line + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0
