"""The wyoming actor's own parts, no models: the event reader's limits, audio into bus frames, session names,
the zeroconf announcement, and the actor on a real bus (describe, connection limit, a taken port)."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from actors.wyoming_actor import WyomingActor
from actors.wyoming_protocol import (
    FRAME_BYTES,
    FrameCutter,
    WyomingProtocolError,
    conversation_session,
    read_event,
    sentences,
)
from actors.wyoming_settings import WyomingSettings
from bus.sockets import BusAddress
from launch.bench_doors import free_port
from launch.wyoming_client import describe, read_until
from tests.helpers import ActorThread


def read(raw: bytes) -> Event | None:
    async def go() -> Event | None:
        reader = asyncio.StreamReader(limit=64 * 1024)
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_event(reader)

    return asyncio.run(go())


def test_an_event_with_data_and_payload_reads_whole() -> None:
    good = read(b'{"type": "audio-chunk", "data": {"rate": 16000}, "data_length": 27, "payload_length": 4}\n'
                b'{"width": 2, "channels": 1}\x01\x00\x02\x00')
    assert good is not None and good.data == {"rate": 16000, "width": 2, "channels": 1}
    assert good.payload == b"\x01\x00\x02\x00"
    assert read(b"") is None  # the client closed between events


@pytest.mark.parametrize(("raw", "says"), [
    (b"\x00\xff not json\n", "not JSON"),
    (b'"just a string"\n', "string 'type'"),
    (b'{"type": 5}\n', "string 'type'"),
    (b'{"type": "x", "data": [1]}\n', "not an object"),
    (b'{"type": "x", "payload_length": 1099511627776}\n', "payload_length"),
    (b'{"type": "x", "data_length": -1}\n', "data_length"),
    (b'{"type": "x", "payload_length": true}\n', "payload_length"),
    (b'{"type": "x", "payload_length": 10}\nshort', "in the middle of 'x'"),
    (b'{"type": "x", "data_length": 3}\n[1]', "not a JSON object"),
    (b'{"type": "x"', "middle of an event header"),
    (b"{" + b"x" * 70_000 + b"\n", "longer than"),
])
def test_malformed_input_is_refused_with_its_reason(raw: bytes, says: str) -> None:
    with pytest.raises(WyomingProtocolError, match=says):
        read(raw)


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_client_audio_becomes_the_mics_frames(channels: int) -> None:
    rate, seconds = 48000, 1.0
    tone = (np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
    stereo = np.repeat(tone, channels).tobytes()
    cutter = FrameCutter(AudioStart(rate=rate, width=2, channels=channels))
    frames = []
    for at in range(0, len(stereo), 3001):  # odd chunk sizes: half samples must not shift later ones
        piece = AudioChunk(rate=rate, width=2, channels=channels, audio=stereo[at: at + 3001]).event()
        frames += list(cutter.feed(piece))
    rest = cutter.rest()
    assert all(len(f) == FRAME_BYTES for f in frames) and len(rest) < FRAME_BYTES
    assert abs(cutter.samples - 16000 * seconds) < 400  # a little lost to the chunks' cut samples
    pcm = np.frombuffer(b"".join(frames), dtype=np.int16)
    assert 5000 < np.abs(pcm).max() <= 8100  # the tone survived the conversion


def test_conversation_ids_become_plain_sessions() -> None:
    assert conversation_session("01HZX3K9ABCDEF") == "wyoming-c-01HZX3K9ABCDEF"
    odd = conversation_session("../../etc/passwd*/x" + "y" * 100)
    assert odd.startswith("wyoming-c-h") and "/" not in odd and "*" not in odd and len(odd) < 40
    assert odd == conversation_session("../../etc/passwd*/x" + "y" * 100)  # the same conversation, the same memory


def test_text_is_cut_into_sentences() -> None:
    assert sentences("Hello friend. How are you? Good!  ") == ["Hello friend.", "How are you?", "Good!"]
    assert sentences("   ") == []


def test_zeroconf_announces_the_service(bus_address: BusAddress) -> None:
    # Loopback here has no MULTICAST flag, so a second process cannot hear the announcement: we check the
    # registration python-zeroconf made and that its own resolver answers for the name.
    actor = WyomingActor(WyomingSettings(host="127.0.0.1", port=0, zeroconf=True, zeroconf_address="127.0.0.1",
                                         zeroconf_name="rocky-test"))

    async def announce() -> tuple[int, list[str]]:
        actor.port = 10777
        await actor._announce()
        assert actor.zeroconf is not None
        info = await actor.zeroconf.async_get_service_info("_wyoming._tcp.local.", "rocky-test._wyoming._tcp.local.",
                                                            timeout=2000)
        try:
            assert info is not None
            return info.port, info.parsed_addresses()
        finally:
            await actor._close()

    assert asyncio.run(announce()) == (10777, ["127.0.0.1"])


def test_the_actor_serves_describe_and_limits_its_clients(bus_address: BusAddress) -> None:
    port = free_port()
    actor = WyomingActor(WyomingSettings(host="127.0.0.1", port=port, zeroconf=False, max_connections=1))

    async def clients() -> tuple[list[Event], list[str]]:
        async with AsyncTcpClient("127.0.0.1", port) as first:
            await first.write_event(Event(type="ping", data={"text": "hi"}))
            pong = await read_until(first, {"pong"})
            async with AsyncTcpClient("127.0.0.1", port) as second:  # one too many
                refused = await read_until(second, {"error"})
        info = await describe("127.0.0.1", port)  # the first has gone: room again
        return pong + refused, [m.name for m in info.asr[0].models]

    with ActorThread(actor, bus_address):
        assert actor.started.wait(20) and not actor.start_error
        events, models = asyncio.run(asyncio.wait_for(clients(), 30))
    assert [e.type for e in events] == ["pong", "error"] and "too many" in events[1].data["text"]
    assert models == ["stt (not announced yet)"]  # no stt actor on this bus


def test_a_transcription_longer_than_a_minute_is_refused(bus_address: BusAddress) -> None:
    port = free_port()
    actor = WyomingActor(WyomingSettings(host="127.0.0.1", port=port, zeroconf=False))
    second = bytes(32000)

    async def stream_too_long() -> list[Event]:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            for _ in range(61):
                await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=second).event())
            return await read_until(client, {"error"})

    with ActorThread(actor, bus_address):
        assert actor.started.wait(20) and not actor.start_error
        events = asyncio.run(asyncio.wait_for(stream_too_long(), 30))
    assert events[-1].type == "error" and "more than 60 s" in events[-1].data["text"]


def test_a_taken_port_is_a_start_error_that_names_it(bus_address: BusAddress) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        actor = WyomingActor(WyomingSettings(host="127.0.0.1", port=port, zeroconf=False))
        actor.address = bus_address
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is in use"):
            actor.on_start()
    with pytest.raises(ValueError, match="out of range"):
        WyomingActor(WyomingSettings(port=70000)).on_start()
