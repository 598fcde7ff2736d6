"""The llm actor's backend for OpenAI-compatible HTTP servers (llama-server, llama_cpp.server, Ollama, vLLM).

Standard library only (http.client), so an edge install needs nothing more. It
streams chat or text completions as Server-Sent Events and keeps every wait
bounded: the connection, the first piece of text, and each silence between
pieces. Whatever goes wrong ends in an `LlmServerError` whose message says
what to fix; the actor base turns it into a `TurnError`, so no turn hangs.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from actors.llm_http_tools import StreamedCalls, chat_request_fields
from actors.llm_prompt import Conversation
from actors.llm_settings import STOP, LlmSettings

API_KEY_ENV = "ROCKY_RELAY_LLM_API_KEY"
"""Where the bearer token comes from when llm.api_key is empty (keeps secrets out of config files)."""
START_HINT = "start it (e.g. `python -m llama_cpp.server --model FILE --port 8080`) or fix llm.url"
PATHS = {"chat": "/chat/completions", "completions": "/completions"}
_MAX_LINE = 1 << 20  # one SSE line; a bigger one is not a token chunk


class LlmServerError(RuntimeError):
    """The LLM server could not give a reply; the message names the server and what to fix."""


class LlmServerDown(LlmServerError):
    """No connection, or the connection dropped before the reply was whole."""


class LlmServerTimeout(LlmServerError):
    """Connected, but no text within llm.first_token_timeout_s, or a silence over llm.idle_timeout_s."""


class LlmServerBadReply(LlmServerError):
    """An HTTP error status, or an answer that is not an OpenAI-style completion stream."""


class OpenAiHttpGenerator:
    """Streams replies from an OpenAI-compatible server; token counts are estimated (about 4 chars each)."""

    def __init__(self, settings: LlmSettings) -> None:
        if settings.api not in PATHS:
            raise ValueError(f"llm.api {settings.api!r}: use chat or completions")
        parts = urlsplit(settings.url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"llm.url {settings.url!r}: expected http://HOST:PORT/v1")
        for name in ("connect_timeout_s", "first_token_timeout_s", "idle_timeout_s"):
            if not getattr(settings, name) > 0:
                raise ValueError(f"llm.{name} must be above 0 (a wait without bound can hang a turn)")
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path + PATHS[settings.api]
        self.api_key = settings.api_key or os.environ.get(API_KEY_ENV, "")
        model = f" model {settings.http_model}" if settings.http_model else ""
        self.description = f"openai {settings.api} {self.url}{model}"
        self.calls = StreamedCalls()
        """The tool call of the reply being streamed (a server sends it apart from the text)."""

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / 4)

    def prompt_tokens(self, conversation: Conversation) -> int:
        return self.count_tokens(conversation.transcript())

    def prefill(self, conversation: Conversation) -> None:
        """A server evaluates the prompt only when asked for a reply."""

    def stream(self, conversation: Conversation) -> Iterator[str]:
        self.calls = StreamedCalls()
        conn = self._connect()
        try:  # closing also tells the server to stop generating when the turn is interrupted
            deadline = time.monotonic() + self.settings.first_token_timeout_s
            response = self._post(conn, self._body(conversation), deadline)
            if response.getheader("Content-Type", "").startswith("application/json"):
                yield from self._whole_reply(conn, response, deadline)  # a server that ignored stream=true
            else:
                yield from self._events(conn, response, deadline)
        finally:
            conn.close()

    def _body(self, conversation: Conversation) -> bytes:
        s = self.settings
        body: dict[str, Any] = {"stream": True, "max_tokens": s.max_tokens, "temperature": s.temperature,
                                "top_p": s.top_p, "seed": s.seed, "stop": STOP}
        if s.api == "chat":
            body.update(chat_request_fields(conversation))  # messages, and the tools when any are offered
        else:
            body["prompt"] = conversation.transcript()
        if s.http_model:
            body["model"] = s.http_model
        return json.dumps(body).encode("utf-8")

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.settings.connect_timeout_s)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            why = why_unreachable(exc, self.settings.connect_timeout_s)
            raise LlmServerDown(f"llm server {self.url} is not answering ({why}): {START_HINT}") from exc
        return conn

    def _post(self, conn: http.client.HTTPConnection, body: bytes, deadline: float) -> http.client.HTTPResponse:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            self._wait_until(conn, deadline, got_text=False)
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
        except TimeoutError as exc:
            raise self._timeout(got_text=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._broken(exc, got_text=False) from exc
        if response.status != 200:
            raise self._bad_status(conn, response, deadline)
        return response

    def _events(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                deadline: float) -> Iterator[str]:
        """Text pieces from a Server-Sent Events stream of completion chunks, until `data: [DONE]`."""
        data: list[str] = []
        finished = got_text = False
        while True:
            line = self._readline(conn, response, deadline, got_text)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if line and text:
                field, _, value = text.partition(":")
                if field == "data":
                    data.append(value.removeprefix(" "))
                elif field not in ("", "event", "id", "retry"):  # "" is a comment line (": keep-alive")
                    raise self._garbage(f"a line that is not Server-Sent Events: {text[:80]!r}")
                continue
            if data:  # a blank line (or the end) closes the event
                event, data = "\n".join(data), []
                if event.strip() == "[DONE]":
                    yield from self._call_text()
                    return
                calls_before = len(str(self.calls.calls))
                piece, done = self._chunk_text(event)
                finished = finished or done
                if piece or len(str(self.calls.calls)) != calls_before:  # a tool call streaming is progress too
                    got_text = True
                    deadline = time.monotonic() + self.settings.idle_timeout_s
                if piece:
                    yield piece
            if not line:
                if finished:
                    yield from self._call_text()
                    return  # some servers end a finished stream without [DONE]
                raise LlmServerDown(f"llm server {self.url} closed the stream mid-reply: check its log "
                                    "(did it crash or run out of memory?)")

    def _whole_reply(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                     deadline: float) -> Iterator[str]:
        lines = []
        while line := self._readline(conn, response, deadline, got_text=False):
            lines.append(line)
        piece, _ = self._chunk_text(b"".join(lines).decode("utf-8", "replace"))
        if piece:
            yield piece
        yield from self._call_text()

    def _call_text(self) -> Iterator[str]:
        """The tool call the server streamed, as the one text piece actors/llm_tools.py reads."""
        if text := self.calls.as_text():
            yield text

    def _chunk_text(self, data: str) -> tuple[str, bool]:
        """The text of one completion chunk (or whole completion), and whether it says the reply is done."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._garbage(f"an event that is not JSON: {data[:80]!r}") from None
        if isinstance(chunk, dict) and "error" in chunk:
            raise LlmServerBadReply(f"llm server {self.url} reported an error: {_error_text(chunk)}")
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list):
            raise self._garbage(f"JSON without choices: {data[:80]!r}")
        if not choices:  # e.g. a usage-only chunk
            return "", False
        choice = choices[0] if isinstance(choices[0], dict) else {}
        holder = choice.get("delta") or choice.get("message") or choice
        if isinstance(holder, dict):
            self.calls.add(holder.get("tool_calls"))
        text = holder.get("content") if "content" in holder else holder.get("text")
        return (text if isinstance(text, str) else ""), choice.get("finish_reason") is not None

    def _readline(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                  deadline: float, got_text: bool) -> bytes:
        try:
            self._wait_until(conn, deadline, got_text)
            return response.readline(_MAX_LINE)
        except TimeoutError as exc:
            raise self._timeout(got_text) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._broken(exc, got_text) from exc

    def _wait_until(self, conn: http.client.HTTPConnection, deadline: float, got_text: bool) -> None:
        # A per-read timeout alone would let a server that trickles keep-alives hold a turn forever.
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout(got_text)
        if conn.sock is not None:
            conn.sock.settimeout(left)

    def _timeout(self, got_text: bool) -> LlmServerTimeout:
        if got_text:
            return LlmServerTimeout(
                f"llm server {self.url} stopped answering mid-reply (nothing for "
                f"{self.settings.idle_timeout_s:g} s): check the server, or raise llm.idle_timeout_s")
        return LlmServerTimeout(
            f"llm server {self.url} sent no text within {self.settings.first_token_timeout_s:g} s: it may be "
            "busy or still loading its model; check it, or raise llm.first_token_timeout_s")

    def _broken(self, exc: BaseException, got_text: bool) -> LlmServerError:
        # RemoteDisconnected and IncompleteRead are HTTPExceptions too, but they mean the server went away.
        if (isinstance(exc, http.client.HTTPException)
                and not isinstance(exc, ConnectionError | http.client.IncompleteRead)):
            return self._garbage(f"a broken HTTP answer ({type(exc).__name__}: {exc})")
        when = "mid-reply" if got_text else "before replying"
        why = why_unreachable(exc, self.settings.connect_timeout_s)
        return LlmServerDown(f"llm server {self.url} dropped the connection {when} ({why}): "
                             "check its log (did it crash?)")

    def _garbage(self, what: str) -> LlmServerBadReply:
        return LlmServerBadReply(f"llm server {self.url} sent {what}: check that llm.url is an OpenAI-compatible "
                                 "/v1 endpoint")

    def _bad_status(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                    deadline: float) -> LlmServerBadReply:
        try:
            self._wait_until(conn, deadline, got_text=False)
            raw = response.read(4096)
        except (OSError, http.client.HTTPException, LlmServerError):
            raw = b""
        try:
            detail = _error_text(json.loads(raw))
        except ValueError:
            detail = raw.decode("utf-8", "replace").strip()
        status = response.status
        hint = ("set llm.api_key or " + API_KEY_ENV if status in (401, 403) else
                f"check llm.url (it should end in /v1), llm.api ({self.settings.api}) and llm.http_model"
                if status < 500 else "the server failed: see its log")
        return LlmServerBadReply(f"llm server {self.url} answered HTTP {status} {response.reason} to POST "
                                 f"{self.path}: {detail[:200] or 'no details'}; {hint}")


def why_unreachable(exc: BaseException, connect_timeout_s: float) -> str:
    """Why a connection to a server failed, in words (the HTTP LLM and STT backends both say it)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no connection within {connect_timeout_s:g} s"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_text(body: Any) -> str:
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error).strip()
