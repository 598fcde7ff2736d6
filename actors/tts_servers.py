"""Cloned-voice and OpenAI-style TTS servers: the rocky_say XTTS server and `/v1/audio/speech`.

rocky_say (the seed project's server for a cloned Rocky voice): `GET /health` answers
`{"status": "ok", ...}`; `POST /` with JSON `{"text": ...}` answers the whole clause as `audio/wav`. It is
slow (~3 s a clause warm), so each clause is sent in pieces cut at its commas and the first piece is kept to
a few words: the first sound comes after one short synthesis, not after the whole clause.

OpenAI-compatible speech (Kokoro-FastAPI, speaches, openedai-speech, hosted services): `POST {url}/audio/speech`
with JSON `{model, input, voice, response_format}`; `wav` answers a WAV (maybe streamed), `pcm` headerless
16-bit mono at 24 kHz. The bearer token comes from ROCKY_RELAY_TTS_API_KEY, never from the config.
No such server runs here with real weights: the tests drive small servers that follow these APIs exactly.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from actors.tts_backends import HttpSynthesizer, TtsBackendError

if TYPE_CHECKING:
    from actors.tts import Synthesizer, TtsSettings

API_KEY_ENV = "ROCKY_RELAY_TTS_API_KEY"
"""The bearer token for a hosted speech server (kept out of config files, argv and logs)."""
OPENAI_FORMATS = ("wav", "pcm")
OPENAI_PCM_RATE = 24000
"""OpenAI's `pcm` format: raw 16-bit little-endian mono samples at 24 kHz, no header."""
ROCKY_SAY_HINT = "start the rocky_say server on the machine with the GPU (docs/voices.md)"
OPENAI_HINT = "start the speech server (e.g. Kokoro-FastAPI on port 8880) or fix tts.url (it should end in /v1)"
_CLAUSE_END = re.compile(r"(?<=[,;:\u2014])\s+")


def first_piece_short(text: str, first_words: int) -> list[str]:
    """`text` cut at its commas (and semicolons, colons, dashes), the first piece at most `first_words` words."""
    pieces = [p.strip() for p in _CLAUSE_END.split(text.strip()) if p.strip()]
    if pieces and first_words > 0:
        words = pieces[0].split()
        if len(words) > first_words + 2:  # a cut that leaves two words behind saves nothing
            pieces[:1] = [" ".join(words[:first_words]), " ".join(words[first_words:])]
    return pieces


def _base(url: str, setting: str, example: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url.rstrip("/"))
    try:
        parts.port  # noqa: B018 - urlsplit only checks the port when it is read
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TtsBackendError(f"{setting} {url!r}: expected {example}")
    return parts


class RockySaySynthesizer:
    """The rocky_say XTTS server: a health check at start, then one POST per short piece of each clause."""

    def __init__(self, url: str, connect_timeout_s: float, read_timeout_s: float, first_words: int) -> None:
        parts = _base(url, "tts.url", "http://host:port/ (the rocky_say server's root)")
        self.root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self._check_health(parts, connect_timeout_s)
        self.first_words = first_words
        # The POST itself, its WAV reading, its timeouts and its error wording are the http backend's.
        self.http = HttpSynthesizer(f"{self.root}/", "json", "text", "", connect_timeout_s, read_timeout_s,
                                    start_hint=ROCKY_SAY_HINT)
        self.sample_rate = self.http.sample_rate
        self.description = f"rocky_say {self.root} {self.sample_rate} Hz"

    def _check_health(self, parts: urllib.parse.SplitResult, timeout_s: float) -> None:
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=timeout_s)
        try:
            conn.request("GET", "/health", headers={"Accept": "application/json"})
            response = conn.getresponse()
            raw = response.read(4096)
        except OSError as exc:
            raise TtsBackendError(f"rocky_say server {self.root} is not answering ({exc!r}): {ROCKY_SAY_HINT}, "
                                  "or fix tts.url") from exc
        except http.client.HTTPException as exc:
            raise TtsBackendError(f"rocky_say server {self.root} sent a broken answer to GET /health ({exc!r}): "
                                  "is tts.url a rocky_say server?") from exc
        finally:
            conn.close()
        try:
            health = json.loads(raw)
        except ValueError:
            health = None
        status = health.get("status") if isinstance(health, dict) else None
        if response.status != 200 or status != "ok":
            snippet = raw[:200].decode("utf-8", "replace").strip()
            raise TtsBackendError(f"rocky_say server {self.root} is not healthy: GET /health answered "
                                  f"{response.status} {snippet!r} (expected {{\"status\": \"ok\"}}); see its log")

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for piece in first_piece_short(text, self.first_words):
            yield from self.http.synthesize(piece)


class OpenAiSpeechSynthesizer:
    """`POST {url}/audio/speech` on an OpenAI-compatible server, one request per clause, streamed as it comes."""

    def __init__(self, url: str, model: str, voice: str, response_format: str, speed: float,
                 connect_timeout_s: float, read_timeout_s: float) -> None:
        parts = _base(url, "tts.url", "http://host:port/v1 (e.g. http://127.0.0.1:8880/v1 for Kokoro-FastAPI)")
        if response_format not in OPENAI_FORMATS:
            raise TtsBackendError(f"tts.response_format {response_format!r}: use {' or '.join(OPENAI_FORMATS)} "
                                  "(compressed formats would need a decoder)")
        if not model or not voice:
            raise TtsBackendError("the openai backend needs tts.server_model and tts.server_voice (e.g. "
                                  "\"kokoro\" and \"af_heart\" for Kokoro-FastAPI, \"tts-1\" and \"alloy\" for OpenAI)")
        headers = {"Accept": "audio/wav" if response_format == "wav" else "audio/pcm"}
        if key := os.environ.get(API_KEY_ENV, ""):
            headers["Authorization"] = f"Bearer {key}"
        fields = {"model": model, "voice": voice, "response_format": response_format, "speed": speed}
        endpoint = urllib.parse.urlunsplit(parts) + "/audio/speech"
        self.http = HttpSynthesizer(endpoint, "json", "input", json.dumps(fields), connect_timeout_s,
                                    read_timeout_s, headers=headers,
                                    raw_pcm_rate=OPENAI_PCM_RATE if response_format == "pcm" else 0,
                                    start_hint=OPENAI_HINT)
        self.sample_rate = self.http.sample_rate
        self.description = f"openai speech {endpoint} {model}/{voice} {response_format} {self.sample_rate} Hz"

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        yield from self.http.synthesize(text)


def make_server_synthesizer(backend: str, settings: TtsSettings) -> Synthesizer:
    """The hibari, rocky_say or openai backend, configured from tts settings."""
    if backend == "hibari":
        from actors.tts_hibari import HibariSynthesizer

        return HibariSynthesizer(settings.voice, speed=1.0 / settings.length_scale)
    if backend == "rocky_say":
        return RockySaySynthesizer(settings.url, settings.connect_timeout_s, settings.read_timeout_s,
                                   settings.first_clause_words)
    return OpenAiSpeechSynthesizer(settings.url, settings.server_model, settings.server_voice,
                                   settings.response_format, 1.0 / settings.length_scale,
                                   settings.connect_timeout_s, settings.read_timeout_s)
