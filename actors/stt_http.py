"""The stt actor's backend for OpenAI-compatible `/v1/audio/transcriptions` servers.

speaches, faster-whisper-server, whisper.cpp's server (with its --inference-path set to
/v1/audio/transcriptions) and hosted services all take the same multipart form: `file` (a WAV),
`model`, `response_format` (json or text) and `language`. Standard library only, like the HTTP LLM backend,
with the same bounded waits and the same kind of errors: each says which server and what to fix, and the
actor base turns it into a `TurnError`, so a turn never hangs on a server.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import time
import uuid
import wave
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from actors.llm_http import why_unreachable

if TYPE_CHECKING:
    from actors.stt import SttSettings

API_KEY_ENV = "ROCKY_RELAY_STT_API_KEY"
"""The bearer token for a server that needs one (kept out of config files, argv and logs)."""
FORMATS = ("json", "text")
START_HINT = "start it (e.g. `speaches` or `whisper-server --inference-path /v1/audio/transcriptions`) or fix stt.url"
SAMPLE_RATE = 16000
MAX_ANSWER_BYTES = 1 << 20
"""A transcript is a few hundred bytes; more than this is not one."""


class SttServerError(RuntimeError):
    """The STT server could not transcribe; the message names the server and what to fix."""


class SttServerDown(SttServerError):
    """No connection, or the connection dropped before the answer was whole."""


class SttServerTimeout(SttServerError):
    """Connected, but no whole answer within stt.read_timeout_s."""


class SttServerBadReply(SttServerError):
    """An HTTP error status, or an answer that is not a transcription."""


def wav_bytes(audio: np.ndarray) -> bytes:
    """float32 mono 16 kHz audio as a 16-bit PCM WAV file."""
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


def multipart(fields: dict[str, str], file_name: str, file_bytes: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with `fields` and one file part named `file`, and its content type."""
    boundary = f"rocky-relay-{uuid.uuid4().hex}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
                 "Content-Type: audio/wav\r\n\r\n".encode() + file_bytes + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class HttpRecognizer:
    """Sends each transcription to an OpenAI-compatible server as one multipart POST."""

    def __init__(self, settings: SttSettings) -> None:
        parts = urlsplit(settings.url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"stt.url {settings.url!r}: expected http://HOST:PORT/v1")
        if settings.response_format not in FORMATS:
            raise ValueError(f"stt.response_format {settings.response_format!r}: use {' or '.join(FORMATS)}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            if not getattr(settings, name) > 0:
                raise ValueError(f"stt.{name} must be above 0 (a wait without bound can hang a turn)")
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path + "/audio/transcriptions"
        self.api_key = os.environ.get(API_KEY_ENV, "")
        self.description = f"openai transcriptions {self.url} model {settings.http_model}"
        # Prove the server is there and speaks the API before the first turn depends on it.
        self.transcribe(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))

    def transcribe(self, audio: np.ndarray) -> str:
        s = self.settings
        fields = {"model": s.http_model, "response_format": s.response_format}
        if s.language and s.language != "auto":  # auto: the server finds out itself
            fields["language"] = s.language
        body, content_type = multipart(fields, "speech.wav", wav_bytes(audio))
        headers = {"Content-Type": content_type, "Accept": "application/json, text/plain"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=s.connect_timeout_s)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise SttServerDown(f"stt server {self.url} is not answering ({self._why(exc)}): {START_HINT}") from exc
            # One deadline for the whole answer: a server that trickles bytes must not hold the turn.
            deadline = time.monotonic() + s.read_timeout_s
            try:
                self._wait_until(conn, deadline)
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                pieces: list[bytes] = []
                while sum(map(len, pieces)) <= MAX_ANSWER_BYTES:
                    self._wait_until(conn, deadline)
                    if not (piece := response.read1(65536)):
                        break
                    pieces.append(piece)
                raw = b"".join(pieces)
            except TimeoutError as exc:
                raise SttServerTimeout(f"stt server {self.url} gave no transcript within stt.read_timeout_s="
                                       f"{s.read_timeout_s:g} s: it may be busy or loading its model") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise SttServerDown(f"stt server {self.url} dropped the connection before answering "
                                    f"({self._why(exc)}): check its log (did it crash?)") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise self._bad_status(response, raw)
        return self._text(raw, response.getheader("Content-Type", ""))

    @staticmethod
    def _wait_until(conn: http.client.HTTPConnection, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if conn.sock is not None:  # gone once a `Connection: close` answer took it over; its last timeout holds
            conn.sock.settimeout(left)

    def _text(self, raw: bytes, content_type: str) -> str:
        if len(raw) > MAX_ANSWER_BYTES:
            raise self._garbage(f"an answer over {MAX_ANSWER_BYTES} bytes")
        text = raw.decode("utf-8", "replace")
        if self.settings.response_format == "text" and not content_type.startswith("application/json"):
            return text.strip()
        try:
            answer = json.loads(text)
        except ValueError:
            raise self._garbage(f"an answer that is not JSON: {text[:80]!r}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise self._garbage(f"JSON without a text field: {text[:80]!r}")
        return str(answer["text"]).strip()

    def _garbage(self, what: str) -> SttServerBadReply:
        return SttServerBadReply(f"stt server {self.url} sent {what}: check that stt.url is an OpenAI-compatible "
                                 "/v1 endpoint and stt.response_format")

    def _bad_status(self, response: http.client.HTTPResponse, raw: bytes) -> SttServerBadReply:
        try:
            body = json.loads(raw)
            error = body.get("error", body) if isinstance(body, dict) else body
            detail = str(error.get("message", error) if isinstance(error, dict) else error)
        except ValueError:
            detail = raw.decode("utf-8", "replace").strip()
        status = response.status
        hint = (f"set {API_KEY_ENV}" if status in (401, 403) else
                "check stt.url (it should end in /v1) and stt.http_model" if status < 500 else
                "the server failed: see its log")
        return SttServerBadReply(f"stt server {self.url} answered HTTP {status} {response.reason} to POST "
                                 f"{self.path}: {detail[:200] or 'no details'}; {hint}")

    def _why(self, exc: BaseException) -> str:
        return why_unreachable(exc, self.settings.connect_timeout_s)
