"""The Wyoming door with the real models, every actor its own process, spoken to over real TCP by the
`wyoming` library's own client, as Home Assistant (or any third party) would."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, async_read_event
from wyoming.tts import Synthesize

from actors.wyoming_protocol import ASR_SESSION, TTS_SESSION, conversation_session
from audio.wav import is_silent, load_pcm16_mono, resample
from bus.messages import TurnRecord
from bus.sockets import BusClient
from launch.bench_doors import QUESTION_WAV, free_port
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.wyoming_client import (
    converse,
    converse_into_speech,
    describe,
    read_until,
    synthesize,
    synthesize_streaming,
    text_of,
    transcribe,
)

# The module's set loads every model on the first test: a loaded 2-core machine needs more than 300 s.
pytestmark = [pytest.mark.models, pytest.mark.timeout(1200)]
HOST = "127.0.0.1"


@dataclass
class Door:
    supervisor: Supervisor
    port: int
    records: BusClient
    """Subscribed to turn records: each Wyoming operation's turn gets one."""

    def record(self, session_prefix: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """The next turn record of a session starting with `session_prefix`."""
        while (env := self.records.recv(timeout_ms=timeout_s * 1000)) is not None:
            if isinstance(env.msg, TurnRecord) and env.msg.session.startswith(session_prefix):
                return env.msg.record
        raise AssertionError(f"no turn record of {session_prefix}* within {timeout_s:g} s")


@pytest.fixture(scope="module")
def door() -> Iterator[Door]:
    folder = Path(tempfile.mkdtemp(prefix="rr-wyoming-"))
    port = free_port()
    config_file = folder / "rocky-relay.toml"
    config_file.write_text(f'[bus]\npub = "ipc://{folder}/pub"\nsub = "ipc://{folder}/sub"\n')
    # A loaded machine (the CI box's 2 cores) may take long for a first reply: generous operation timeouts.
    config = load_config(config_file, [f"wyoming.port={port}", f"wyoming.host={HOST}", "wyoming.zeroconf=false",
                                       "wyoming.op_timeout_s=600", f"logger.path={folder}/turns.jsonl"])
    supervisor = Supervisor(config, config.sets["wyoming"], log_dir=folder / "actors")
    records = BusClient(bus_address(config), ("turn.record",), name="test-records")
    try:
        supervisor.start(timeout_s=240)
        warm_up(port)
        yield Door(supervisor, port, records)
        assert supervisor.restarts("wyoming") == 0, (folder / "actors" / "wyoming.log").read_text()[-2000:]
    except BaseException:
        for log in sorted((folder / "actors").glob("*.log")):  # what the actors said, for the failure report
            print(f"--- {log.name}\n{log.read_text()[-1500:]}")
        raise
    finally:
        records.close()
        supervisor.stop()
        shutil.rmtree(folder, ignore_errors=True)


def warm_up(port: int, tries: int = 5) -> None:
    """Until every stage has answered once: an actor may announce itself ready while it still warms its model,
    and the logger then ends the turn that waited on it (a stall), so a first turn may fail."""
    for _ in range(tries):
        answer = run(converse(HOST, port, "Hello Rocky.", f"warm-up-{uuid.uuid4().hex[:8]}"))
        if answer[-1].type == "handled":
            return
    raise AssertionError(f"no reply after {tries} tries: {answer}")


def run(coro: Any, timeout_s: float = 900) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def test_describe_offers_our_stt_voice_and_conversation_agent(door: Door) -> None:
    info = run(describe(HOST, door.port))
    (asr,), (tts,), (handle,) = info.asr, info.tts, info.handle
    assert asr.installed and asr.models[0].name.startswith("faster-whisper") and "en" in asr.models[0].languages
    assert tts.installed and "piper" in tts.voices[0].name.lower()
    assert handle.installed and "gguf" in handle.models[0].name
    assert asr.supports_transcript_streaming and tts.supports_synthesize_streaming
    assert handle.supports_handled_streaming


def test_stt_of_a_wav_at_another_rate_in_stereo(door: Door) -> None:
    mono = load_pcm16_mono(QUESTION_WAV)
    at_22k = (resample(mono.astype(np.float32) / 32768, 16000, 22050) * 32767).astype(np.int16)
    stereo = np.repeat(at_22k, 2).tobytes()  # what a client may send: we convert to 16 kHz mono
    events, _released = run(transcribe(HOST, door.port, stereo, rate=22050, channels=2))
    kinds = [e.type for e in events]
    assert kinds == ["transcript-start", "transcript-chunk", "transcript-stop", "transcript"], kinds
    text = text_of(events, "transcript")
    assert text and text == text_of(events, "transcript-chunk")
    record = door.record(ASR_SESSION)
    assert record["text_in"] == text and record["source"] == "speech"
    # Its reply is not wanted (the words go to the conversation agent next): interrupted at the transcript.
    assert record["status"] == "interrupted" and record["stt_ms"] is not None and record["capture_ms"] > 1000


def test_tts_gives_pcm_at_the_voices_rate(door: Door) -> None:
    events, first = run(synthesize(HOST, door.port, "Hello friend. I am Rocky, an engineer."))
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    chunks = [AudioChunk.from_event(e) for e in events if e.type == "audio-chunk"]
    assert chunks and all(c.rate == 22050 for c in chunks) and events[-1].type == "audio-stop"
    pcm = np.frombuffer(b"".join(c.audio for c in chunks), dtype=np.int16)
    assert len(pcm) > 22050 and not is_silent(pcm) and first is not None
    record = door.record(TTS_SESSION)
    assert record["status"] == "ok" and record["spoken_text"] == "Hello friend. I am Rocky, an engineer."
    assert record["tts_first_chunk_ms"] is not None and record["first_audio_at"] is not None


def test_a_conversation_remembers_what_was_said(door: Door) -> None:
    conversation = f"test-{uuid.uuid4().hex[:12]}"
    first = run(converse(HOST, door.port, "My name is Sam.", conversation))
    assert first[-1].type == "handled", first
    door.record(conversation_session(conversation))  # its audio, unfetched, is released after wyoming.reply_hold_s
    events = run(converse(HOST, door.port, "What is my name?", conversation))
    kinds = [e.type for e in events]
    assert kinds[0] == "handled-start" and kinds[-2:] == ["handled-stop", "handled"] and "handled-chunk" in kinds
    reply = text_of(events, "handled")
    assert "".join(e.data["text"] for e in events if e.type == "handled-chunk") == reply
    assert "sam" in reply.lower(), reply
    assert events[-1].data["context"]["conversation_id"] == conversation
    # Home Assistant asks for the reply's audio next: the audio our TTS made meanwhile serves it.
    audio, first_audio = run(synthesize(HOST, door.port, reply))
    assert first_audio is not None and audio[-1].type == "audio-stop"
    record = door.record(conversation_session(conversation))
    assert record["status"] == "ok" and record["text_in"] == "What is my name?"
    assert record["release_to_first_audio_ms"] is not None and record["llm_first_token_ms"] is not None


def test_a_streamed_reply_streams_into_speech_from_its_own_audio(door: Door) -> None:
    conversation = f"stream-{uuid.uuid4().hex[:12]}"
    agent, speech, first = run(converse_into_speech(HOST, door.port, "Hello Rocky, who are you?", conversation))
    assert agent[-1].type == "handled" and first is not None
    kinds = [e.type for e in speech]
    assert kinds[0] == "audio-start" and kinds[-2:] == ["audio-stop", "synthesize-stopped"], kinds
    pcm = np.frombuffer(b"".join(e.payload or b"" for e in speech if e.type == "audio-chunk"), dtype=np.int16)
    assert not is_silent(pcm)
    # No second synthesis: the next record is the conversation turn's, its audio went to the TTS client.
    record = door.record("wyoming-")
    assert record["session"] == conversation_session(conversation) and record["status"] == "ok"
    assert record["first_audio_at"] is not None


def test_streamed_text_of_our_own_is_spoken_a_sentence_at_a_time(door: Door) -> None:
    async def pieces() -> Any:
        for piece in ("Hello fri", "end. I am Ro", "cky."):
            yield piece

    speech, first = run(synthesize_streaming(HOST, door.port, pieces()))
    assert first is not None and speech[-1].type == "synthesize-stopped"
    record = door.record(TTS_SESSION)
    assert record["status"] == "ok" and record["spoken_text"] == "Hello friend. I am Rocky."


def test_describe_answers_within_a_second_while_a_turn_runs(door: Door) -> None:
    async def under_load() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        async with AsyncTcpClient(HOST, door.port) as client:
            await client.write_event(Transcript(text="Tell me about your ship, in three sentences.",
                                                context={"conversation_id": f"load-{uuid.uuid4().hex}"}).event())
            await read_until(client, {"handled-start"})
            reply = asyncio.create_task(read_until(client, {"handled", "not-handled"}))  # reads while we ask
            asked = loop.time()
            await describe(HOST, door.port)
            described = loop.time()
            events = await reply
            assert events[-1].type == "handled", events
            return asked, described, loop.time()

    asked, described, replied = run(under_load())
    assert described - asked < 1.0
    assert described < replied  # the turn was still running when describe was answered

def test_a_client_that_leaves_mid_stream_ends_only_its_own_turn(door: Door) -> None:
    pcm = load_pcm16_mono(QUESTION_WAV).tobytes()

    async def leave_mid_audio() -> None:
        async with AsyncTcpClient(HOST, door.port) as client:
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            for at in range(0, len(pcm) // 2, 640):
                await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm[at: at + 640]).event())

    async def leave_mid_speech() -> None:
        async with AsyncTcpClient(HOST, door.port) as client:
            await client.write_event(Synthesize(text="One. Two. Three. Four. Five. Six. Seven.").event())
            await read_until(client, {"audio-chunk"})

    run(leave_mid_audio())
    assert door.record(ASR_SESSION)["status"] == "interrupted"
    run(leave_mid_speech())
    assert door.record(TTS_SESSION)["status"] == "interrupted"
    assert run(describe(HOST, door.port)).tts  # still serving


@pytest.mark.parametrize("garbage", [
    b"\x00\xff\xfe not json at all\n",
    b'["a list, not an object"]\n',
    b'{"type": "audio-chunk", "payload_length": 1099511627776}\n',
    b'{"type": "synthesize", "data_length": -5}\n',
    b"{" + b"x" * 70_000,
], ids=["binary", "list", "huge-payload", "negative-length", "huge-header"])
def test_garbage_on_the_socket_closes_that_connection_only(door: Door, garbage: bytes) -> None:
    async def send_garbage() -> list[Event]:
        reader, writer = await asyncio.open_connection(HOST, door.port)
        writer.write(garbage)
        await writer.drain()
        answer = []
        while (event := await asyncio.wait_for(async_read_event(reader), 30)) is not None:
            answer.append(event)  # until the server closes the connection
        writer.close()
        return answer

    answer = run(send_garbage())
    assert answer and answer[0].type == "error"
    assert run(describe(HOST, door.port)).asr  # a good client right after is served
