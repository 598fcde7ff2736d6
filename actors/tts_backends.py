"""Voices from outside the process: a local HTTP TTS server, and the espeak-ng program.

Both answer with a WAV. `WavReply` reads one from a stream as it arrives (header first, then
the PCM in pieces), so a server that streams its answer is heard before it has finished.
How to point the http backend at piper.http_server or another server: docs/tts-servers.md.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import struct
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np

from audio.wav import MAX_RATE, MIN_RATE, Int16Array, WavError, resample, to_pcm16

PIECE_S = 0.2
"""Audio per piece handed to the actor: short enough to start playing early, long enough to be cheap."""
STREAMING_SIZES = (0, 0xFFFFFFFF)
"""data-chunk sizes that streaming writers put in a header before they know the length."""
WARM_UP_TEXT = "Hello."
SNIPPET_CHARS = 200
REQUESTS = ("json", "text", "query")


class TtsBackendError(RuntimeError):
    """A TTS server or program cannot be used; the message says what to do about it."""


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (pipes and sockets return short reads)."""
    parts: list[bytes] = []
    while size > 0:
        part = stream.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


class WavReply:
    """A 16-bit PCM WAV read from a stream: `rate` and `channels` at once, then `pieces()`."""

    def __init__(self, stream: IO[bytes], source: str, content_type: str = "", raw_pcm_rate: int = 0) -> None:
        self.stream = stream
        self.source = source
        if raw_pcm_rate:  # headerless 16-bit mono PCM (OpenAI's response_format "pcm"): only its type can tell
            if content_type.startswith(("text/", "application/json")):
                text = _read_exact(stream, SNIPPET_CHARS).decode("utf-8", "replace").strip()
                raise WavError(f"{source} answered {content_type}, not PCM audio: {text!r}")
            self.channels, self.rate, self.remaining = 1, raw_pcm_rate, None
            return
        head = _read_exact(stream, 12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            # Show what came instead: servers answer errors as HTML, JSON or plain text.
            text = (head + _read_exact(stream, SNIPPET_CHARS)).decode("utf-8", "replace").strip()
            kind = content_type or "no content type"
            raise WavError(f"{source} answered {kind}, not a WAV: {text[:SNIPPET_CHARS]!r}; "
                           "it must answer a 16-bit PCM WAV")
        fmt: bytes | None = None
        while True:
            chunk = _read_exact(stream, 8)
            if len(chunk) < 8:
                raise WavError(f"{source}: WAV answer ends before its data chunk")
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                break
            body = _read_exact(stream, size + size % 2)  # RIFF chunks are padded to even sizes
            if chunk_id == b"fmt ":
                fmt = body
        if fmt is None or len(fmt) < 16:
            raise WavError(f"{source}: WAV answer has no format chunk before its audio")
        tag, self.channels, self.rate, _, _, width = struct.unpack("<HHIIHH", fmt[:16])
        if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format
            tag = struct.unpack("<H", fmt[24:26])[0]
        if tag != 1 or width != 16:
            raise WavError(f"{source}: WAV answer is format {tag}, {width}-bit; only 16-bit PCM is "
                           "supported, so set the server to answer 16-bit PCM WAV")
        if self.channels < 1 or not MIN_RATE <= self.rate <= MAX_RATE:
            raise WavError(f"{source}: WAV answer has {self.channels} channels at {self.rate} Hz")
        # A streaming writer does not know the length yet: read to the end of the stream.
        self.remaining = None if size in STREAMING_SIZES else size

    def pieces(self, rate: int) -> Iterator[Int16Array]:
        """Mono int16 audio at `rate`, in pieces of about PIECE_S as they arrive."""
        frame = 2 * self.channels
        block = max(1, int(PIECE_S * self.rate)) * frame
        if rate != self.rate:
            # Resampling piece by piece would click at every seam; a changed rate is rare, so do it once.
            whole = b"".join(self._blocks(block, frame))
            if whole:
                audio = resample(self._mono(whole).astype(np.float32) / 32768.0, self.rate, rate)
                yield to_pcm16(audio)
            return
        for raw in self._blocks(block, frame):
            yield self._mono(raw)

    def _blocks(self, block: int, frame: int) -> Iterator[bytes]:
        while self.remaining is None or self.remaining > 0:
            want = block if self.remaining is None else min(block, self.remaining)
            raw = _read_exact(self.stream, want)
            if self.remaining is not None:
                self.remaining -= len(raw)
            raw = raw[: len(raw) - len(raw) % frame]  # a cut-off last frame would shift the samples
            if raw:
                yield raw
            if len(raw) < want:
                return

    def _mono(self, raw: bytes) -> Int16Array:
        samples = np.frombuffer(raw, dtype="<i2")
        if self.channels == 1:
            return samples.astype(np.int16)
        mixed: np.ndarray = samples.reshape(-1, self.channels).mean(axis=1)
        return np.round(mixed).astype(np.int16)


def parse_extra_fields(extra_fields: str) -> dict[str, Any]:
    """`tts.extra_fields` (a JSON object) as a dict."""
    try:
        extra = json.loads(extra_fields) if extra_fields.strip() else {}
    except json.JSONDecodeError as exc:
        raise TtsBackendError(f"tts.extra_fields is not JSON ({exc}): {extra_fields!r}") from exc
    if not isinstance(extra, dict):
        raise TtsBackendError(f"tts.extra_fields must be a JSON object, got {extra_fields!r}")
    return extra


class HttpSynthesizer:
    """POSTs (or GETs) each clause to a local TTS server and streams the WAV it answers."""

    def __init__(self, url: str, request: str = "json", text_field: str = "text", extra_fields: str = "",
                 connect_timeout_s: float = 2.0, read_timeout_s: float = 30.0, *,
                 headers: dict[str, str] | None = None, raw_pcm_rate: int = 0,
                 start_hint: str = "python -m piper.http_server -m VOICE.onnx --port N") -> None:
        parts = urllib.parse.urlsplit(url)
        try:
            parts.port  # noqa: B018 - urlsplit only checks the port when it is read
        except ValueError:
            parts = parts._replace(netloc="")  # reported below, with the expected shape
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TtsBackendError(f"tts.url {url!r}: expected http://host:port/path, e.g. "
                                  "http://127.0.0.1:5000/synthesize for piper.http_server")
        if request not in REQUESTS:
            raise TtsBackendError(f"tts.request {request!r}: use {', '.join(REQUESTS)}")
        for name, value in (("connect_timeout_s", connect_timeout_s), ("read_timeout_s", read_timeout_s)):
            if not value > 0:
                raise TtsBackendError(f"tts.{name} must be above 0 (a wait without bound can hang a turn)")
        self.url, self.parts, self.request = url, parts, request
        self.text_field, self.extra = text_field, parse_extra_fields(extra_fields)
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.headers, self.raw_pcm_rate, self.start_hint = headers or {}, raw_pcm_rate, start_hint
        self.description = f"http {url}"
        # The server decides the rate; ask it once now so the first turn is not the one that finds out.
        with self._answer(WARM_UP_TEXT) as reply:
            self.sample_rate = reply.rate
            if not any(len(piece) for piece in reply.pieces(reply.rate)):
                raise WavError(f"tts server {url} answered a WAV with no audio for {WARM_UP_TEXT!r}")

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        with self._answer(text) as reply:
            yield from reply.pieces(self.sample_rate)

    def _request(self, text: str) -> tuple[str, str, bytes | None, dict[str, str]]:
        """Method, path, body and headers for one clause, in the configured request shape."""
        path = self.parts.path or "/"
        if self.request == "query":
            fields: dict[str, Any] = {**self.extra, self.text_field: text}
            query = "&".join(q for q in (self.parts.query, urllib.parse.urlencode(fields)) if q)
            return "GET", f"{path}?{query}", None, {}
        path = f"{path}?{self.parts.query}" if self.parts.query else path
        if self.request == "text":
            return "POST", path, text.encode(), {"Content-Type": "text/plain; charset=utf-8"}
        payload = json.dumps({**self.extra, self.text_field: text}).encode()
        return "POST", path, payload, {"Content-Type": "application/json"}

    @contextmanager
    def _answer(self, text: str) -> Iterator[WavReply]:
        """The server's WAV for `text`; the connection is closed however the reading ends."""
        method, path, body, headers = self._request(text)
        kind: type[http.client.HTTPConnection] = (
            http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection)
        conn = kind(self.parts.hostname or "", self.parts.port, timeout=self.connect_timeout_s)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise TtsBackendError(
                    f"tts server {self.url} is not answering ({exc}): start it "
                    f"({self.start_hint}) or fix tts.url") from exc
            # Connecting may wait only briefly; speaking a long clause may take the server a while.
            assert conn.sock is not None
            conn.sock.settimeout(self.read_timeout_s)
            try:
                conn.request(method, path, body, {**headers, "Accept": "audio/wav", **self.headers})
                response = conn.getresponse()
                if response.status != 200:
                    snippet = response.read(SNIPPET_CHARS).decode("utf-8", "replace").strip()
                    hint = "; check tts.url and tts.request" if 400 <= response.status < 500 else ""
                    raise TtsBackendError(f"tts server {self.url} answered {response.status} "
                                          f"{response.reason}: {snippet!r}{hint}")
                # Also covers the reading done in the `with` body, which happens after this yield.
                yield WavReply(response, f"tts server {self.url}", response.getheader("Content-Type", ""),
                               self.raw_pcm_rate)
            except TimeoutError as exc:
                raise TtsBackendError(f"tts server {self.url} went silent for tts.read_timeout_s="
                                      f"{self.read_timeout_s} s") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise TtsBackendError(f"tts server {self.url} broke off its answer ({exc!r})") from exc
        finally:
            conn.close()


class EspeakSynthesizer:
    """The espeak-ng program: robotic, but tiny, fast and needs no model."""

    def __init__(self, command: str = "espeak-ng", voice: str = "en-us", words_per_minute: int = 175,
                 timeout_s: float = 10.0) -> None:
        found = shutil.which(command)
        if found is None:
            raise TtsBackendError(f"tts.espeak_command {command!r} not found: apt install espeak-ng "
                                  "(brew install espeak-ng on macOS) or set tts.espeak_command to its path")
        self.argv = [found, "--stdout", "-v", voice, "-s", str(words_per_minute)]
        self.timeout_s = timeout_s
        self.description = f"espeak-ng {voice} {words_per_minute}wpm"
        # Finds the rate (22050 Hz, 16000 for mbrola voices) and proves the voice exists before a turn.
        self.sample_rate = self._run(WARM_UP_TEXT).rate

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        yield from self._run(text).pieces(self.sample_rate)

    def _run(self, text: str) -> WavReply:
        try:
            # The text goes in on stdin, so a clause that starts with "-" is never read as an option.
            done = subprocess.run(self.argv, input=text.encode(), capture_output=True,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TtsBackendError(f"{self.argv[0]} did not finish within tts.espeak_timeout_s="
                                  f"{self.timeout_s} s; it was stopped") from exc
        except OSError as exc:
            raise TtsBackendError(f"{self.argv[0]} could not run: {exc}") from exc
        error = done.stderr.decode("utf-8", "replace").strip()
        # espeak-ng exits 0 for an unknown voice; its stderr and an empty stdout tell.
        if done.returncode != 0 or not done.stdout:
            raise TtsBackendError(f"{self.argv[0]} failed (exit {done.returncode}): {error or 'no audio'}; "
                                  "check tts.espeak_voice (espeak-ng --voices lists them)")
        return WavReply(io.BytesIO(done.stdout), self.argv[0])
