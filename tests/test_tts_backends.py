"""The outside voices: a real piper.http_server, a tiny local HTTP server for the odd answers, espeak-ng."""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from actors.tts import Synthesizer, TtsActor, TtsSettings, make_synthesizer
from actors.tts_backends import EspeakSynthesizer, HttpSynthesizer, TtsBackendError
from audio.wav import WavError, is_silent
from bus.codec import Envelope
from bus.messages import AudioChunk, Say, TurnError
from bus.sockets import BusAddress, BusClient
from models.registry import tts_voice_file
from tests.helpers import actor_on_bus, send_all

SENTENCE = "Hello friend, the ship is ready to go."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spoken(synth: Synthesizer, text: str = SENTENCE) -> np.ndarray:
    pieces = list(synth.synthesize(text))
    assert pieces and all(p.dtype == np.int16 and p.ndim == 1 for p in pieces)
    return np.concatenate(pieces)


@pytest.fixture(scope="module")
def piper_url() -> Iterator[str]:
    """A real `python -m piper.http_server` with the embedded voice, on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "piper.http_server", "-m", str(tts_voice_file("")),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    up, lines = threading.Event(), []

    def watch() -> None:  # flask says "Running on" once it listens; EOF means it died
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Running on" in line:
                up.set()
        up.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert up.wait(90) and proc.poll() is None, f"piper.http_server did not start: {''.join(lines)}"
        yield f"http://127.0.0.1:{port}/synthesize"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        watcher.join(5)


@dataclass
class Answers:
    """What the tiny server answers: a tone WAV (`rate`, `channels`), an HTML page, or a stall."""

    mode: str = "wav"
    rate: int = 16000
    channels: int = 1
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def tone_wav(rate: int, channels: int) -> bytes:
    t = np.arange(rate // 2) / rate
    mono = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono, channels).tobytes())
    return out.getvalue()


def streaming_header(rate: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, 2 * rate, 2, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", 0xFFFFFFFF)


@pytest.fixture
def odd_server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answers.requests.append((self.command, self.path, body))
            if answers.mode == "stall":
                answers.release.wait(10)
                return
            if answers.mode == "stream":  # a header that does not know the length, then audio in two goes
                self.send_response(200)
                self.end_headers()
                audio = tone_wav(answers.rate, 1)[44:]
                self.wfile.write(streaming_header(answers.rate) + audio[: len(audio) // 2])
                self.wfile.flush()
                answers.release.wait(10)
                self.wfile.write(audio[len(audio) // 2 :])
                return
            html = answers.mode == "html"
            data = b"<html><body>Oops, wrong page</body></html>" if html else tone_wav(answers.rate,
                                                                                     answers.channels)
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if html else "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/speak", answers
    finally:
        answers.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()


@pytest.mark.models
def test_http_backend_speaks_through_a_real_piper_server(piper_url: str) -> None:
    voice_rate = json.loads(Path(f"{tts_voice_file('')}.json").read_text())["audio"]["sample_rate"]
    synth = make_synthesizer(TtsSettings(backend="http", url=piper_url))
    assert isinstance(synth, HttpSynthesizer) and synth.sample_rate == voice_rate
    audio = spoken(synth)
    assert not is_silent(audio)
    assert 1.0 < len(audio) / synth.sample_rate < 6.0, "eight words should take a few seconds"


def test_http_backend_names_a_server_that_is_down() -> None:
    url = f"http://127.0.0.1:{free_port()}/synthesize"
    started = time.monotonic()
    with pytest.raises(TtsBackendError, match="is not answering") as err:
        HttpSynthesizer(url, connect_timeout_s=2.0)
    assert time.monotonic() - started < 3.0
    assert url in str(err.value) and "python -m piper.http_server" in str(err.value)


def test_http_backend_refuses_a_page_that_is_not_a_wav(odd_server: tuple[str, Answers]) -> None:
    url, answers = odd_server
    answers.mode = "html"
    with pytest.raises(WavError, match="answered text/html, not a WAV") as err:
        HttpSynthesizer(url)
    assert "Oops, wrong page" in str(err.value)


def test_http_backend_gives_up_on_a_server_that_stalls(odd_server: tuple[str, Answers]) -> None:
    url, answers = odd_server
    answers.mode = "stall"
    started = time.monotonic()
    with pytest.raises(TtsBackendError, match=r"went silent for tts\.read_timeout_s=0\.5"):
        HttpSynthesizer(url, read_timeout_s=0.5)
    assert time.monotonic() - started < 5.0


def test_http_backend_request_shapes_and_rate_changes(odd_server: tuple[str, Answers]) -> None:
    url, answers = odd_server
    answers.channels = 2
    synth = HttpSynthesizer(f"{url}?lang=en", request="query", text_field="input",
                            extra_fields='{"voice": "af sky"}')
    method, path, _ = answers.requests[-1]
    assert method == "GET" and path == "/speak?lang=en&voice=af+sky&input=Hello."
    assert synth.sample_rate == 16000 and len(spoken(synth)) == 8000  # stereo mixed down to mono

    answers.rate = 8000  # the server changed voice: resampled to the rate the player was told
    assert abs(len(spoken(synth)) - 8000) <= 1

    HttpSynthesizer(url, request="text")
    assert answers.requests[-1] == ("POST", "/speak", b"Hello.")
    HttpSynthesizer(url, extra_fields='{"length_scale": 0.9}')
    assert json.loads(answers.requests[-1][2]) == {"length_scale": 0.9, "text": "Hello."}
    with pytest.raises(TtsBackendError, match=r"tts\.request"):
        HttpSynthesizer(url, request="xml")
    with pytest.raises(TtsBackendError, match=r"tts\.extra_fields"):
        HttpSynthesizer(url, extra_fields="voice=x")
    with pytest.raises(TtsBackendError, match=r"tts\.url 'localhost:5000': expected http://host:port/path"):
        HttpSynthesizer("localhost:5000")


def test_http_backend_passes_on_a_streamed_answer_as_it_arrives(odd_server: tuple[str, Answers]) -> None:
    url, answers = odd_server
    synth = HttpSynthesizer(url)
    answers.mode = "stream"
    pieces = synth.synthesize("Hello.")
    started = time.monotonic()
    first = next(pieces)  # the server holds back the second half until `release`
    assert time.monotonic() - started < 5.0 and not answers.release.is_set()
    answers.release.set()
    assert len(first) + sum(len(p) for p in pieces) == 8000


def test_espeak_speaks_fast() -> None:
    started = time.monotonic()
    synth = make_synthesizer(TtsSettings(backend="espeak"))
    audio = spoken(synth)
    assert time.monotonic() - started < 2.0, "espeak-ng is the fast fallback"
    assert synth.sample_rate == 22050 and not is_silent(audio)
    assert 1.0 < len(audio) / synth.sample_rate < 6.0


def test_espeak_missing_names_the_package() -> None:
    with pytest.raises(TtsBackendError, match="apt install espeak-ng"):
        EspeakSynthesizer(command="/nonexistent/espeak-ng")


def test_espeak_unknown_voice_is_named() -> None:
    with pytest.raises(TtsBackendError, match=r"tts\.espeak_voice"):
        EspeakSynthesizer(voice="nosuchvoice")


def test_espeak_that_hangs_is_stopped(tmp_path: Path) -> None:
    hung = tmp_path / "espeak-ng"
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(TtsBackendError, match="did not finish within"):
        EspeakSynthesizer(command=str(hung), timeout_s=0.5)
    assert time.monotonic() - started < 5.0


def reply_of(client: BusClient, turn: int, timeout_s: float = 15.0) -> list[Envelope]:
    """The turn's audio chunks up to its `last` one, or the turn's error."""
    got: list[Envelope] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=50)
        if env is None or env.msg.turn != turn:
            continue
        got.append(env)
        if isinstance(env.msg, TurnError) or (isinstance(env.msg, AudioChunk) and env.msg.last):
            return got
    raise AssertionError(f"turn {turn} did not finish; saw {[type(e.msg).__name__ for e in got]}")


def test_tts_actor_speaks_with_espeak_over_the_bus(bus_address: BusAddress) -> None:
    actor = TtsActor(TtsSettings(backend="espeak"))
    with actor_on_bus(actor, bus_address, listen=["audio.out", "turn."]) as client:
        send_all(client, [Say(turn=1, text="Hello friend.", index=0),
                          Say(turn=1, text="Good good good.", index=1, last=True)])
        got = reply_of(client, turn=1)
    chunks = [e.msg for e in got if isinstance(e.msg, AudioChunk)]
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].last
    assert {c.clause for c in chunks} == {0, 1} and {c.sample_rate for c in chunks} == {22050}
    audio = np.frombuffer(b"".join(e.payload for e in got), dtype="<i2")
    assert not is_silent(audio) and got[-1].payload == b""


def test_tts_actor_fails_the_turn_on_a_bad_answer_and_goes_on(bus_address: BusAddress,
                                                              odd_server: tuple[str, Answers]) -> None:
    url, answers = odd_server
    actor = TtsActor(TtsSettings(backend="http", url=url))
    with actor_on_bus(actor, bus_address, listen=["audio.out", "turn."]) as client:
        answers.mode = "html"
        send_all(client, [Say(turn=1, text="Hello.", index=0, last=True)])
        (error,) = [e.msg for e in reply_of(client, turn=1) if isinstance(e.msg, TurnError)]
        assert error.stage == "tts" and "not a WAV" in error.reason and url in error.reason
        answers.mode = "wav"
        send_all(client, [Say(turn=2, text="Hello again.", index=0, last=True)])
        chunks = [e.msg for e in reply_of(client, turn=2) if isinstance(e.msg, AudioChunk)]
    assert chunks[-1].last and {c.sample_rate for c in chunks} == {16000}
