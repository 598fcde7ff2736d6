"""The OpenAI-compatible HTTP backend against a real llama_cpp.server, and against scripted broken peers.
(The `rocky` prompt style and the `rocky_llm` persona that tidies it: tests/test_rocky_style.py.)"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Generator, Iterator
from typing import cast

import pytest

from actors.llm import LlmActor
from actors.llm_backends import make_generator
from actors.llm_http import LlmServerBadReply, LlmServerDown, LlmServerError, LlmServerTimeout
from actors.llm_prompt import Conversation
from actors.llm_settings import STOP, LlmSettings
from bus.messages import LlmDone, LlmToken, Transcript, TurnError
from bus.sockets import BusAddress
from tests.helpers import OneOrMore, of_type, run_actor

TURN = 1_700_000_000_000
QUESTION = "What is your favourite food?"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sse(text: str, finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def http_settings(url: str, **kw: object) -> LlmSettings:
    base: dict[str, object] = {"backend": "openai", "url": url, "api": "completions", "connect_timeout_s": 1.0,
                               "first_token_timeout_s": 1.0, "idle_timeout_s": 0.8}
    return LlmSettings(**{**base, **kw})  # type: ignore[arg-type]


def reply_of(s: LlmSettings, question: str = QUESTION) -> list[str]:
    return list(make_generator(s).stream(Conversation(question, style=s.style)))


def timed_failure(s: LlmSettings, error: type[LlmServerError]) -> tuple[str, float, list[str]]:
    """The error message, the seconds until it came, and the pieces streamed before it."""
    pieces: list[str] = []
    start = time.monotonic()
    with pytest.raises(error) as info:
        for piece in make_generator(s).stream(Conversation(QUESTION)):
            pieces.append(piece)
    return str(info.value), time.monotonic() - start, pieces


class ScriptedServer:
    """An HTTP peer on a free port that answers each connection with `parts` (after `pause_s` each), then
    stalls until the test ends (stall=True) or closes. It records every request it read."""

    def __init__(self, parts: list[bytes], pause_s: float = 0.0, stall: bool = True) -> None:
        self.parts, self.pause_s, self.stall = parts, pause_s, stall
        self.requests: list[tuple[str, dict[str, object]]] = []
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()
        assert not self.thread.is_alive(), "scripted server did not stop"

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            # OSError: the client hung up first, which is what some tests want.
            with conn, contextlib.suppress(OSError):
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data and (more := conn.recv(65536)):
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length and (more := conn.recv(65536)):
            body += more
        self.requests.append((head.decode(), json.loads(body) if body else {}))
        for part in self.parts:
            if self.done.wait(self.pause_s):
                return
            conn.sendall(part)
        if self.stall:
            self.done.wait(30)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """A real `python -m llama_cpp.server` on the embedded gemma-3-270m; yields its /v1 URL."""
    from models.registry import llm_model_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(llm_model_file("")),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/models", timeout=1) as answer:
                        assert answer.status == 200
                        break
                except OSError:
                    pass
                try:  # waits on the process: it either dies (fail now) or the pause passes
                    proc.wait(timeout=0.25)
                except subprocess.TimeoutExpired:
                    pass
                else:
                    log.seek(0)
                    pytest.fail(f"llama_cpp.server exited {proc.returncode}: {log.read()[-2000:]!r}")
                assert time.monotonic() < deadline, "llama_cpp.server not ready within 120 s"
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- against the real server -----------------------------------------------------------------------


@pytest.mark.models
def test_completions_stream_a_short_sane_reply(llama_server: str) -> None:
    pieces = reply_of(http_settings(llama_server, first_token_timeout_s=30.0, idle_timeout_s=10.0))
    reply = "".join(pieces).strip()
    assert len(pieces) > 1 and reply, pieces
    assert "\n" not in reply and "User:" not in reply and len(reply) < 400


@pytest.mark.models
def test_chat_streams_text(llama_server: str) -> None:
    pieces = reply_of(http_settings(llama_server, api="chat", first_token_timeout_s=30.0, idle_timeout_s=10.0))
    assert len(pieces) > 1 and "".join(pieces).strip(), pieces


@pytest.mark.models
def test_a_dropped_stream_leaves_the_server_ready_for_the_next_turn(llama_server: str) -> None:
    s = http_settings(llama_server, first_token_timeout_s=30.0, idle_timeout_s=10.0, max_tokens=48)
    stream = cast(Generator[str, None, None],
                  make_generator(s).stream(Conversation("Tell me a long story.")))
    assert next(stream)
    stream.close()  # what an interrupt does: the generator is abandoned after a piece
    assert "".join(reply_of(s)).strip()


@pytest.mark.models
def test_llm_actor_answers_through_the_server(llama_server: str, bus_address: BusAddress) -> None:
    s = http_settings(llama_server, first_token_timeout_s=30.0, idle_timeout_s=10.0)
    got = run_actor(LlmActor(s), bus_address, [Transcript(turn=TURN, text=QUESTION)],
                    expect=[OneOrMore(LlmToken), LlmDone], listen=["llm.", "turn."], timeout_s=60)
    (done,) = of_type(got, LlmDone)
    assert done.text and done.tokens >= 1 and done.prompt_tokens > 10 and not of_type(got, TurnError)


# --- against a missing or broken server ------------------------------------------------------------


def test_server_down_fails_fast_with_what_to_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there any more
    message, _, _ = timed_failure(http_settings(url), LlmServerDown)
    assert f"llm server {url} is not answering (connection refused)" in message
    assert "llama_cpp.server" in message and "llm.url" in message


def test_a_silent_server_hits_the_first_token_timeout() -> None:
    with ScriptedServer([]) as server:  # accepts, reads the request, never answers
        message, elapsed, _ = timed_failure(http_settings(server.url), LlmServerTimeout)
    assert "sent no text within 1 s" in message and "llm.first_token_timeout_s" in message
    assert elapsed > 0.9  # it waited its bound out (how much longer a loaded machine takes is the bench's)


def test_keep_alives_without_text_do_not_extend_the_first_token_bound() -> None:
    # Text would come after 10 s of keep-alives: a bound they extended would wait for it and stream it.
    with ScriptedServer([SSE_HEAD, *[b": keep-alive\n\n"] * 100, sse(" late")], pause_s=0.1) as server:
        message, _, pieces = timed_failure(http_settings(server.url), LlmServerTimeout)
    assert "sent no text within 1 s" in message and pieces == []


def test_a_server_stalling_mid_reply_hits_the_idle_timeout() -> None:
    with ScriptedServer([SSE_HEAD + sse(" I am")]) as server:
        message, _, pieces = timed_failure(http_settings(server.url), LlmServerTimeout)
    assert pieces == [" I am"] and "stopped answering mid-reply" in message and "llm.idle_timeout_s" in message


def test_a_server_closing_mid_reply_is_a_clear_error() -> None:
    with ScriptedServer([SSE_HEAD + sse(" I am")], stall=False) as server:
        message, _, pieces = timed_failure(http_settings(server.url), LlmServerDown)
    assert pieces == [" I am"] and "closed the stream mid-reply" in message


@pytest.mark.parametrize(("status", "hint"), [(500, "see its log"), (401, "llm.api_key"), (404, "end in /v1")])
def test_an_http_error_status_is_reported_with_a_hint(status: int, hint: str) -> None:
    body = b'{"error": {"message": "model exploded"}}'
    answer = (f"HTTP/1.1 {status} Oops\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
              "Connection: close\r\n\r\n").encode() + body
    with ScriptedServer([answer], stall=False) as server:
        message, _, _ = timed_failure(http_settings(server.url), LlmServerBadReply)
    assert f"answered HTTP {status} Oops to POST /v1/completions: model exploded" in message and hint in message


@pytest.mark.parametrize(("answer", "says"), [
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hi</html>\n", "not Server-Sent Events"),
    (SSE_HEAD + b"data: {not json\n\n", "not JSON"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "broken HTTP answer"),
])
def test_garbage_is_a_clear_error(answer: bytes, says: str) -> None:
    with ScriptedServer([answer], stall=False) as server:
        message, _, _ = timed_failure(http_settings(server.url), LlmServerBadReply)
    assert says in message and "OpenAI-compatible" in message


def test_request_carries_the_settings_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKY_RELAY_LLM_API_KEY", "sekrit")
    with ScriptedServer([SSE_HEAD, sse(" Hello"), sse(" friend.", "stop"), b"data: [DONE]\n\n"],
                        stall=False) as server:
        s = http_settings(server.url, api="chat", http_model="gemma3:270m", max_tokens=7, seed=3, temperature=0.2)
        assert reply_of(s) == [" Hello", " friend."]
    head, body = server.requests[0]
    assert head.startswith("POST /v1/chat/completions ") and "Authorization: Bearer sekrit" in head
    assert body["stream"] is True and body["model"] == "gemma3:270m" and body["stop"] == STOP
    assert (body["max_tokens"], body["seed"], body["temperature"]) == (7, 3, 0.2)
    assert body["messages"] == Conversation(QUESTION).messages()


def test_a_server_that_ignores_stream_still_gives_the_reply() -> None:
    body = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}}]}'
    answer = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
              ).encode() + body
    with ScriptedServer([answer], stall=False) as server:
        assert reply_of(http_settings(server.url, api="chat")) == ["Hi."]


def test_llm_actor_ends_a_stalled_turn_with_a_turn_error(bus_address: BusAddress) -> None:
    with ScriptedServer([SSE_HEAD + sse(" I am")]) as server:
        got = run_actor(LlmActor(http_settings(server.url)), bus_address, [Transcript(turn=TURN, text=QUESTION)],
                        expect=[LlmToken, TurnError], listen=["llm.", "turn."])
    (error,) = of_type(got, TurnError)
    assert error.stage == "llm" and "stopped answering mid-reply" in error.reason


def test_bad_settings_are_refused_at_start() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"api": "rest"}, "llm.api"), ({"url": "127.0.0.1:8080"}, "llm.url"),
        ({"idle_timeout_s": 0.0}, "llm.idle_timeout_s"), ({"style": "pirate"}, "llm.style")]
    for bad, field in cases:
        with pytest.raises(ValueError, match=field):
            make_generator(http_settings(str(bad.pop("url", "http://127.0.0.1:1/v1")), **bad))
