"""The HTTP STT backend against a small real server that follows OpenAI's POST /v1/audio/transcriptions
(multipart form: file, model, response_format json|text, language), transcribing with the real
faster-whisper tiny.en as speaches does; and every way such a server can fail, named."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from threading import Event, Lock

import numpy as np
import pytest

from actors.llm_prompt import words_of
from actors.stt import SttActor, SttSettings
from actors.stt_http import API_KEY_ENV, HttpRecognizer, SttServerBadReply, SttServerDown, SttServerTimeout
from actors.stt_whisper import WhisperRecognizer
from actors.tts import PiperSynthesizer, TtsSettings
from audio.wav import resample
from bus.messages import AudioFrame, CaptureEnd, Transcript, TurnError
from bus.sockets import BusAddress
from tests.helpers import actor_on_bus, collect, send_all
from tests.test_tts_backends import free_port
from tests.test_tts_servers import serve

QUESTION = "What is the capital of France?"


@dataclass
class Whisperer:
    """The server's state: how it behaves (`mode`) and the forms it was sent."""

    recognizer: WhisperRecognizer
    url: str = ""
    mode: str = "ok"
    """ok, auth (needs Bearer sk-test), error (500), garbage (200 HTML), stall, or notext (JSON without text)."""
    forms: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: Event = field(default_factory=Event)
    lock: Lock = field(default_factory=Lock)


class TranscriptionHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        state: Whisperer = self.server.state  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state.headers.append(dict(self.headers))
        if self.path != "/v1/audio/transcriptions":
            return self.reply(404, "application/json", b'{"detail": "Not Found"}')
        if state.mode == "auth" and self.headers.get("Authorization") != "Bearer sk-test":
            return self.reply(401, "application/json", b'{"error": {"message": "Invalid API key"}}')
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not form.is_multipart():
            return self.reply(422, "application/json", b'{"detail": "expected multipart/form-data"}')
        fields: dict[str, str] = {}
        audio: bytes | None = None
        for part in form.iter_parts():
            name = part.get_param("name", header="content-disposition")
            content = part.get_payload(decode=True)
            if name == "file" and isinstance(content, bytes):
                audio = content
            elif isinstance(name, str) and isinstance(content, bytes):
                fields[name] = content.decode()
        state.forms.append(fields)
        if audio is None or "model" not in fields:
            return self.reply(422, "application/json", b'{"detail": "file and model are required"}')
        if state.mode == "stall":
            state.release.wait(10)
            return None
        if state.mode == "error":
            return self.reply(500, "application/json", b'{"error": {"message": "model crashed"}}')
        if state.mode == "garbage":
            return self.reply(200, "text/html", b"<html>proxy error</html>")
        if state.mode == "notext":
            return self.reply(200, "application/json", b'{"segments": []}')
        with wave.open(io.BytesIO(audio)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        with state.lock:  # one model, one request at a time
            text = state.recognizer.transcribe(pcm.astype(np.float32) / 32768.0)
        if fields.get("response_format", "json") == "text":
            return self.reply(200, "text/plain; charset=utf-8", text.encode())
        return self.reply(200, "application/json", json.dumps({"text": text}).encode())

    def reply(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recognizer() -> WhisperRecognizer:
    return WhisperRecognizer(SttSettings(threads=1))


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    piper = PiperSynthesizer(TtsSettings(threads=1))
    pcm = np.concatenate(list(piper.synthesize(QUESTION)))
    return (resample(pcm.astype(np.float32) / 32768.0, piper.sample_rate, 16000) * 32767).astype(np.int16)


@pytest.fixture
def server(recognizer: WhisperRecognizer) -> Iterator[Whisperer]:
    yield from serve(TranscriptionHandler, Whisperer(recognizer), "/v1")


@pytest.mark.parametrize("response_format", ["json", "text"])
def test_a_question_is_transcribed_by_the_server(server: Whisperer, question: np.ndarray,
                                                 response_format: str) -> None:
    recognizer = HttpRecognizer(SttSettings(backend="http", url=server.url, response_format=response_format))
    assert words_of(recognizer.transcribe(question.astype(np.float32) / 32768.0)) == words_of(QUESTION)
    assert server.forms[-1] == {"model": "Systran/faster-whisper-tiny.en", "response_format": response_format,
                                "language": "en"}


def test_the_stt_actor_over_http_fails_a_turn_and_serves_the_next(bus_address: BusAddress, server: Whisperer,
                                                                  question: np.ndarray) -> None:
    actor = SttActor(SttSettings(backend="http", url=server.url, streaming=False))

    def spoken_turn(turn: int) -> list[tuple[AudioFrame, bytes] | CaptureEnd]:
        count = len(question) // 320
        frames: list[tuple[AudioFrame, bytes] | CaptureEnd] = [
            (AudioFrame(turn=turn, seq=i), question[i * 320:(i + 1) * 320].tobytes()) for i in range(count)]
        return [*frames, CaptureEnd(turn=turn, frames=count, duration_ms=20.0 * count)]

    with actor_on_bus(actor, bus_address, listen=["stt.", "turn."]) as client:
        server.mode = "error"
        send_all(client, spoken_turn(1))
        error = collect(client, [TurnError], timeout_s=30)[-1].msg
        assert isinstance(error, TurnError) and error.stage == "stt"
        assert "answered HTTP 500" in error.reason and "model crashed" in error.reason and server.url in error.reason
        server.mode = "ok"
        send_all(client, spoken_turn(2))
        final = collect(client, [Transcript], timeout_s=30)[-1].msg
    assert isinstance(final, Transcript) and final.turn == 2 and words_of(final.text) == words_of(QUESTION)


def test_a_server_that_is_down_stalls_or_answers_garbage_is_named(server: Whisperer) -> None:
    with pytest.raises(SttServerDown, match=r"is not answering \(connection refused\)"):
        HttpRecognizer(SttSettings(backend="http", url=f"http://127.0.0.1:{free_port()}/v1"))
    impatient = HttpRecognizer(SttSettings(backend="http", url=server.url, read_timeout_s=0.5))
    patient = HttpRecognizer(SttSettings(backend="http", url=server.url))  # a loaded machine is no stall
    silence = np.zeros(8000, dtype=np.float32)
    for mode, recognizer, error, why in (
            ("stall", impatient, SttServerTimeout, r"no transcript within stt.read_timeout_s=0.5 s"),
            ("garbage", patient, SttServerBadReply, r"not JSON: '<html>proxy error</html>'"),
            ("notext", patient, SttServerBadReply, r"JSON without a text field")):
        server.mode = mode
        with pytest.raises(error, match=why):
            recognizer.transcribe(silence)


def test_the_key_comes_from_the_environment_and_a_refusal_says_so(server: Whisperer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    server.mode = "auth"
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(SttServerBadReply, match=rf"HTTP 401.*Invalid API key; set {API_KEY_ENV}"):
        HttpRecognizer(SttSettings(backend="http", url=server.url))
    monkeypatch.setenv(API_KEY_ENV, "sk-test")
    recognizer = HttpRecognizer(SttSettings(backend="http", url=server.url))
    assert server.headers[-1]["Authorization"] == "Bearer sk-test" and "sk-test" not in recognizer.description


@pytest.mark.parametrize("setting, value, why", [("url", "localhost:8000", "expected http://HOST:PORT/v1"),
                                                 ("response_format", "srt", "use json or text"),
                                                 ("read_timeout_s", 0.0, "must be above 0")])
def test_bad_settings_are_named(setting: str, value: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        HttpRecognizer(SttSettings(backend="http", **{setting: value}))  # type: ignore[arg-type]
