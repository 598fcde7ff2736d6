"""The cloned-voice server backends against small real HTTP servers that follow the published APIs exactly:
the rocky_say XTTS server (GET /health, POST / -> audio/wav) and OpenAI's POST /v1/audio/speech (wav, pcm).
No such server runs here with real weights; these speak their wire formats, nothing more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Event, Thread
from typing import Protocol, TypeVar

import numpy as np
import pytest

from actors.tts import TtsActor, TtsSettings, make_synthesizer
from actors.tts_backends import TtsBackendError
from actors.tts_servers import API_KEY_ENV, OpenAiSpeechSynthesizer, RockySaySynthesizer, first_piece_short
from audio.wav import WavError
from bus.messages import AudioChunk, Say, TurnError
from bus.sockets import BusAddress
from tests.helpers import actor_on_bus, send_all
from tests.test_tts_backends import free_port, reply_of, tone_wav

XTTS_RATE = 24000


@dataclass
class Server:
    """What a small server answers (`mode`) and what it was asked (`requests`: method, path, headers, body)."""

    url: str = ""
    mode: str = "ok"
    """ok, unhealthy, error (500), garbage (200 but not audio) or stall (answers nothing until released)."""
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    release: Event = field(default_factory=Event)

    def posted(self) -> list[dict[str, object]]:
        return [json.loads(body) for method, _p, _h, body in self.requests if method == "POST"]


class Served(Protocol):
    url: str
    release: Event


S = TypeVar("S", bound=Served)


def serve(handler_for: type[BaseHTTPRequestHandler], state: S, prefix: str) -> Iterator[S]:
    """A small HTTP server on a free loopback port with `state` for its handlers, until the generator ends
    (then anything stalled is released and the thread joined)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for)
    server.state = state  # type: ignore[attr-defined]
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()


class Handler(BaseHTTPRequestHandler):
    def state(self) -> Server:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.state().requests.append((self.command, self.path, dict(self.headers), body))
        return body

    def reply(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def misbehaved(self) -> bool:
        """The failure modes both servers share; True when one was acted out."""
        mode = self.state().mode
        if mode == "stall":
            self.state().release.wait(10)
            return True
        if mode == "error":
            self.reply(500, "application/json", b'{"detail": "CUDA out of memory"}')
            return True
        if mode == "garbage":
            self.reply(200, "text/html", b"<html>Bad gateway, try later</html>")
            return True
        return False

    def log_message(self, *args: object) -> None:
        pass


class RockySayHandler(Handler):
    """rocky_say: GET /health -> {"status": "ok", ...}; POST / with {"text": ...} -> the whole clause as WAV."""

    def do_GET(self) -> None:
        self.record()
        if self.path != "/health":
            self.reply(404, "application/json", b'{"detail": "Not Found"}')
        elif self.state().mode == "unhealthy":
            self.reply(503, "application/json", b'{"status": "loading", "model": "xtts_v2"}')
        else:
            self.reply(200, "application/json", b'{"status": "ok", "model": "xtts_v2", "speaker": "rocky"}')

    def do_POST(self) -> None:
        body = self.record()
        if self.path != "/" or self.headers.get("Content-Type") != "application/json":
            self.reply(404 if self.path != "/" else 415, "application/json", b'{"detail": "bad request"}')
            return
        text = json.loads(body).get("text")
        if not isinstance(text, str) or not text.strip():
            self.reply(400, "application/json", b'{"detail": "text is required"}')
        elif not self.misbehaved():
            self.reply(200, "audio/wav", tone_wav(XTTS_RATE, 1))


class SpeechHandler(Handler):
    """OpenAI: POST /v1/audio/speech {model, input, voice, response_format?, speed?} -> wav or headerless pcm."""

    def do_POST(self) -> None:
        request = json.loads(self.record())
        if self.path != "/v1/audio/speech":
            self.reply(404, "application/json", b'{"error": {"message": "Not found"}}')
            return
        if self.state().mode == "auth" and self.headers.get("Authorization") != "Bearer sk-test":
            self.reply(401, "application/json", b'{"error": {"message": "Incorrect API key provided"}}')
            return
        if not all(isinstance(request.get(k), str) and request[k] for k in ("model", "input", "voice")):
            self.reply(400, "application/json", b'{"error": {"message": "model, input and voice are required"}}')
            return
        if self.misbehaved():
            return
        wav = tone_wav(XTTS_RATE, 1)
        if request.get("response_format", "mp3") == "pcm":
            self.reply(200, "audio/pcm", wav[44:])
        else:
            self.reply(200, "audio/wav", wav)


@pytest.fixture
def rocky_say() -> Iterator[Server]:
    yield from serve(RockySayHandler, Server(), "/")


@pytest.fixture
def speech() -> Iterator[Server]:
    yield from serve(SpeechHandler, Server(), "/v1")


def test_the_first_piece_of_a_clause_is_a_few_words_and_the_rest_goes_at_its_commas() -> None:
    assert first_piece_short("Hello friend, the ship is ready.", 4) == ["Hello friend,", "the ship is ready."]
    assert first_piece_short("I am happy you are here with me today, friend.", 4) == [
        "I am happy you", "are here with me today,", "friend."]
    assert first_piece_short("Yes yes yes.", 4) == ["Yes yes yes."]


def test_rocky_say_checks_health_then_speaks_a_clause_in_short_pieces(rocky_say: Server) -> None:
    synth = make_synthesizer(TtsSettings(voice="rocky-xtts", url=rocky_say.url))
    assert isinstance(synth, RockySaySynthesizer) and synth.sample_rate == XTTS_RATE
    pieces = list(synth.synthesize("I am happy you are here with me today, friend."))
    assert all(p.dtype == np.int16 for p in pieces)
    assert sum(map(len, pieces)) == 3 * (XTTS_RATE // 2)  # three answers of half a second each
    assert [(m, p) for m, p, _h, _b in rocky_say.requests] == [("GET", "/health"), ("POST", "/"), ("POST", "/"),
                                                              ("POST", "/"), ("POST", "/")]
    assert rocky_say.posted() == [{"text": "Hello."}, {"text": "I am happy you"},
                                  {"text": "are here with me today,"}, {"text": "friend."}]


@pytest.mark.parametrize("mode, why", [("unhealthy", "not healthy: GET /health answered 503"),
                                       ("error", "answered 500"), ("garbage", "not a WAV")])
def test_rocky_say_that_is_unhealthy_or_broken_is_named_at_start(rocky_say: Server, mode: str, why: str) -> None:
    rocky_say.mode = mode
    with pytest.raises((TtsBackendError, WavError), match=why) as caught:
        make_synthesizer(TtsSettings(backend="rocky_say", url=rocky_say.url))
    assert rocky_say.url.rstrip("/") in str(caught.value)


def test_rocky_say_that_is_down_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(TtsBackendError, match=r"is not answering.*rocky_say"):
        make_synthesizer(TtsSettings(backend="rocky_say", url=url, connect_timeout_s=1))


def test_rocky_say_that_goes_silent_times_out(rocky_say: Server) -> None:
    synth = make_synthesizer(TtsSettings(backend="rocky_say", url=rocky_say.url, read_timeout_s=1.0))
    rocky_say.mode = "stall"
    with pytest.raises(TtsBackendError, match=r"went silent for tts.read_timeout_s=1.0"):
        list(synth.synthesize("Hello."))


def test_tts_actor_fails_the_turn_when_rocky_say_breaks_and_goes_on(bus_address: BusAddress,
                                                                    rocky_say: Server) -> None:
    actor = TtsActor(TtsSettings(backend="rocky_say", url=rocky_say.url, effect="rocky"))
    with actor_on_bus(actor, bus_address, listen=["audio.out", "turn."]) as client:
        for mode, turn in (("error", 1), ("garbage", 2)):
            rocky_say.mode = mode
            send_all(client, [Say(turn=turn, text="Hello friend.", index=0, last=True)])
            (error,) = [e.msg for e in reply_of(client, turn=turn) if isinstance(e.msg, TurnError)]
            assert error.stage == "tts" and rocky_say.url.rstrip("/") in error.reason
        rocky_say.mode = "ok"
        send_all(client, [Say(turn=3, text="Hello again.", index=0, last=True)])
        chunks = [e.msg for e in reply_of(client, turn=3) if isinstance(e.msg, AudioChunk)]
    assert chunks[-1].last and {c.sample_rate for c in chunks} == {XTTS_RATE}


@pytest.mark.parametrize("response_format", ["wav", "pcm"])
def test_openai_speech_sends_the_published_fields_and_plays_wav_or_pcm(speech: Server, response_format: str) -> None:
    synth = make_synthesizer(TtsSettings(voice="openai", url=speech.url, server_model="kokoro",
                                         server_voice="af_heart", response_format=response_format))
    assert isinstance(synth, OpenAiSpeechSynthesizer) and synth.sample_rate == XTTS_RATE
    audio = np.concatenate(list(synth.synthesize("The ship is ready.")))
    assert np.array_equal(audio, np.frombuffer(tone_wav(XTTS_RATE, 1)[44:], dtype=np.int16))
    assert speech.posted()[-1] == {"model": "kokoro", "voice": "af_heart", "response_format": response_format,
                                   "speed": 1.0, "input": "The ship is ready."}
    assert all(path == "/v1/audio/speech" for _m, path, _h, _b in speech.requests)


def test_openai_speech_sends_the_key_from_the_environment_only(speech: Server,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    speech.mode = "auth"
    settings = TtsSettings(backend="openai", url=speech.url, server_model="tts-1", server_voice="alloy")
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(TtsBackendError, match=r"answered 401 Unauthorized.*Incorrect API key"):
        make_synthesizer(settings)
    monkeypatch.setenv(API_KEY_ENV, "sk-test")
    synth = make_synthesizer(settings)
    assert "sk-test" not in synth.description
    assert speech.requests[-1][2]["Authorization"] == "Bearer sk-test"


def test_openai_speech_settings_and_failures_are_named(speech: Server) -> None:
    with pytest.raises(TtsBackendError, match=r"needs tts.server_model and tts.server_voice"):
        make_synthesizer(TtsSettings(backend="openai", url=speech.url))
    with pytest.raises(TtsBackendError, match=r"tts.response_format 'mp3': use wav or pcm"):
        make_synthesizer(TtsSettings(backend="openai", url=speech.url, server_model="m", server_voice="v",
                                     response_format="mp3"))
    pcm = TtsSettings(backend="openai", url=speech.url, server_model="m", server_voice="v", response_format="pcm")
    synth = make_synthesizer(pcm)
    impatient = make_synthesizer(replace(pcm, read_timeout_s=1.0))
    speech.mode = "garbage"
    with pytest.raises(WavError, match=r"answered text/html, not PCM audio"):
        list(synth.synthesize("Hello."))
    speech.mode = "error"
    with pytest.raises(TtsBackendError, match=r"answered 500.*CUDA out of memory"):
        list(synth.synthesize("Hello."))
    speech.mode = "stall"
    with pytest.raises(TtsBackendError, match=r"went silent"):
        list(impatient.synthesize("Hello."))
