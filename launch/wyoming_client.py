"""A Wyoming client as a third party would write it, on the `wyoming` library's own `AsyncTcpClient`: the
operations Home Assistant's voice pipeline runs against a Wyoming server (describe, transcribe, the
conversation agent, synthesis, streamed and not). `rocky-relay bench --suite doors` and tests/test_wyoming.py
use it against the wyoming actor.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

READ_TIMEOUT_S = 600.0
"""Longest wait for the next event: an upper bound for a loaded machine, not an expectation."""
CHUNK_MS = 20


async def read_until(client: AsyncTcpClient, last: set[str], timeout_s: float = READ_TIMEOUT_S) -> list[Event]:
    """Events until one of the types in `last` (or the server closing the connection)."""
    events, _first_audio = await read_audio_until(client, last, timeout_s)
    return events


async def read_audio_until(client: AsyncTcpClient, last: set[str],
                           timeout_s: float = READ_TIMEOUT_S) -> tuple[list[Event], float | None]:
    """`read_until`, and when the first `audio-chunk` came (time.time(); None without one)."""
    events: list[Event] = []
    first: float | None = None
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout_s)
        if event is None:
            return events, first
        if event.type == "audio-chunk" and first is None:
            first = time.time()
        events.append(event)
        if event.type in last:
            return events, first


async def describe(host: str, port: int) -> Info:
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Describe().event())
        (info,) = await read_until(client, {"info"})
        return Info.from_event(info)


async def transcribe(host: str, port: int, pcm: bytes, rate: int = 16000, width: int = 2, channels: int = 1,
                     realtime: bool = False) -> tuple[list[Event], float]:
    """Stream `pcm` (chunks of 20 ms, paced like a live mic when `realtime`); the events up to the
    transcript, and when `audio-stop` went out (time.time())."""
    step = rate * width * channels * CHUNK_MS // 1000
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        began = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), step)):
            if realtime:
                await asyncio.sleep(max(0.0, began + i * CHUNK_MS / 1000 - time.monotonic()))
            await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                                audio=pcm[at: at + step]).event())
        await client.write_event(AudioStop().event())
        released = time.time()
        return await read_until(client, {"transcript"}), released


async def converse(host: str, port: int, text: str, conversation_id: str) -> list[Event]:
    """The conversation agent's answer: events up to `handled` or `not-handled`."""
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcript(text=text, context={"conversation_id": conversation_id}).event())
        return await read_until(client, {"handled", "not-handled"})


async def synthesize(host: str, port: int, text: str) -> tuple[list[Event], float | None]:
    """The voice's audio for `text`: events up to `audio-stop`, and when the first chunk came."""
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Synthesize(text=text).event())
        return await read_audio_until(client, {"audio-stop", "error"})


async def synthesize_streaming(host: str, port: int, pieces: Any) -> tuple[list[Event], float | None]:
    """Streamed text (an async iterator of pieces, as Home Assistant pipes a streaming agent's reply in):
    synthesize-start, a chunk a piece, the whole text as `synthesize` (for servers that do not stream),
    synthesize-stop; the events up to `synthesize-stopped`, and when the first audio chunk came."""
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(SynthesizeStart().event())

        async def feed() -> None:
            text = ""
            async for piece in pieces:
                text += piece
                await client.write_event(SynthesizeChunk(text=piece).event())
            await client.write_event(Synthesize(text=text).event())
            await client.write_event(SynthesizeStop().event())

        feeding = asyncio.create_task(feed())
        events, first = await read_audio_until(client, {"synthesize-stopped", "error"})
        await feeding
        return events, first


async def converse_into_speech(host: str, port: int, text: str, conversation_id: str
                               ) -> tuple[list[Event], list[Event], float | None]:
    """What Home Assistant does with a streaming agent and a streaming TTS: each `handled-chunk` goes on
    into the TTS as it comes. The agent's events, the TTS's, and when the first audio chunk came."""
    agent: list[Event] = []
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pieces() -> Any:
        while (piece := await queue.get()) is not None:
            yield piece

    async def listen() -> None:
        async with AsyncTcpClient(host, port) as client:
            await client.write_event(Transcript(text=text, context={"conversation_id": conversation_id}).event())
            while not agent or agent[-1].type not in ("handled", "not-handled"):
                event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT_S)
                if event is None:
                    break
                agent.append(event)
                if event.type == "handled-chunk":
                    queue.put_nowait(str(event.data.get("text", "")))
        queue.put_nowait(None)

    listening = asyncio.create_task(listen())
    speech, first = await synthesize_streaming(host, port, pieces())
    await listening
    return agent, speech, first


def text_of(events: list[Event], kind: str) -> str:
    return next((str(e.data.get("text", "")) for e in events if e.type == kind), "")
