"""The Wyoming side of the wyoming actor: reading events with limits, audio into bus frames, `info`.

Wire format (the `wyoming` library's, which Home Assistant uses): one JSON line `{"type", "data"?,
"data_length"?, "payload_length"?}`, then `data_length` bytes of JSON merged into `data`, then
`payload_length` bytes of payload (PCM). The library's own reader turns malformed input into "end of
stream"; ours raises `WyomingProtocolError` naming the problem, so the connection is refused with a reason
that is logged and sent to the client, and nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart
from wyoming.event import Event
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)

from actors.wyoming_settings import SESSION_PREFIX, WyomingSettings

MAX_HEADER_BYTES = 64 * 1024
"""A header line is a few hundred bytes; the stream reader's own limit (asyncio's default) is this."""
MAX_DATA_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 4 << 20
"""An audio chunk is a few KB (Home Assistant sends 20-100 ms); 4 MiB is 2 minutes of 16 kHz speech."""
MAX_TEXT_CHARS = 4000
"""Longer text to speak or answer is refused (the llm refuses longer transcripts too)."""
BUS_RATE = 16000
FRAME_BYTES = 640
"""20 ms of 16 kHz mono int16: the frames the mic actor sends, so VAD and STT see what they always see."""


class WyomingProtocolError(Exception):
    """The client sent something that is not a Wyoming event (or not one we can take)."""


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event; None when the client closed the connection between events."""
    try:
        line = await reader.readline()
    except ValueError as exc:  # asyncio: "Separator is not found, and chunk exceed the limit"
        raise WyomingProtocolError(f"header line longer than {MAX_HEADER_BYTES} bytes") from exc
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise WyomingProtocolError("connection closed in the middle of an event header")
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WyomingProtocolError(f"header is not JSON: {line[:60]!r}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise WyomingProtocolError(f"header is not an object with a string 'type': {line[:60]!r}")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise WyomingProtocolError(f"'data' of {header['type']!r} is not an object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise WyomingProtocolError(f"data of {header['type']!r} is not a JSON object")
            data.update(extra)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError as exc:
        raise WyomingProtocolError(f"connection closed in the middle of {header['type']!r}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WyomingProtocolError(f"data of {header['type']!r} is not JSON") from exc
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise WyomingProtocolError(f"{key} {value!r} of {header['type']!r}: expected 0..{limit}")
    return value


def audio_format(event: Event) -> AudioStart:
    """The format an `audio-start` (or a first chunk) announces, checked: what we can convert."""
    try:
        start = AudioStart.from_event(event)
        fine = (isinstance(start.rate, int) and 4000 <= start.rate <= 192000 and start.width in (1, 2, 4)
                and isinstance(start.channels, int) and 1 <= start.channels <= 8)
    except (KeyError, TypeError) as exc:
        raise WyomingProtocolError(f"{event.type} without rate, width and channels") from exc
    if not fine:
        raise WyomingProtocolError(f"{event.type}: unsupported audio {event.data} "
                                   "(rate 4000-192000 Hz, width 1, 2 or 4 bytes, 1-8 channels)")
    return start


class FrameCutter:
    """Client audio in any PCM format as the bus's 20 ms frames of 16 kHz mono int16."""

    def __init__(self, start: AudioStart) -> None:
        self.format = start
        self.to_16_bit = AudioChunkConverter(width=2)
        # audioop's ratecv keeps its state across chunks, so a stream resamples without seams.
        self.to_bus_rate = AudioChunkConverter(rate=BUS_RATE)
        self.pending = b""
        self.carry = b""
        self.samples = 0

    def feed(self, event: Event) -> Iterator[bytes]:
        """The whole frames the chunk completes."""
        fmt = self.format
        frame = fmt.width * fmt.channels
        audio = self.carry + (event.payload or b"")
        # A chunk may end inside a sample: its bytes start the next one, so no later sample shifts.
        whole = len(audio) // frame * frame
        audio, self.carry = audio[:whole], audio[whole:]
        wide = self.to_16_bit.convert(AudioChunk(rate=fmt.rate, width=fmt.width, channels=fmt.channels,
                                                 audio=audio)).audio
        # The channels' mean (audioop's tomono sums them, which clips loud stereo, and takes only two).
        mono = np.frombuffer(wide, dtype=np.int16).reshape(-1, fmt.channels).mean(axis=1).astype(np.int16)
        self.pending += self.to_bus_rate.convert(AudioChunk(rate=fmt.rate, width=2, channels=1,
                                                            audio=mono.tobytes())).audio
        while len(self.pending) >= FRAME_BYTES:
            piece, self.pending = self.pending[:FRAME_BYTES], self.pending[FRAME_BYTES:]
            self.samples += FRAME_BYTES // 2
            yield piece

    def rest(self) -> bytes:
        """What is left after the last whole frame (sent as a short last frame)."""
        rest, self.pending = self.pending, b""
        self.samples += len(rest) // 2
        return rest


ASR_SESSION = f"{SESSION_PREFIX}asr"
TTS_SESSION = f"{SESSION_PREFIX}tts"
"""One session for every transcription, one for every synthesis (their turn ids tell them apart): a session
each would fill the LLM's memory of sessions (64 held, 256 files) and push real conversations out."""
CONVERSATION_PREFIX = f"{SESSION_PREFIX}c-"


def conversation_session(conversation_id: str) -> str:
    """The bus session of a conversation: the LLM keeps memory per session. Ids Home Assistant mints (ULIDs)
    stay readable; anything else is hashed, so no client text shapes a topic beyond a plain name."""
    if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", conversation_id):
        return f"{CONVERSATION_PREFIX}{conversation_id}"
    return f"{CONVERSATION_PREFIX}h{hashlib.sha256(conversation_id.encode('utf-8', 'replace')).hexdigest()[:24]}"


OURS = Attribution(name="Rocky Relay (fan project)", url="")


def build_info(settings: WyomingSettings, backends: dict[str, str], version: str) -> Info:
    """What `describe` answers: our STT, voice and conversation agent, with the models the actors run."""
    languages = [settings.language]

    def model(actor: str) -> str:
        return backends.get(actor) or f"{actor} (not announced yet)"

    def artifact(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "attribution": OURS, "installed": True, "description": description,
                "version": version}

    return Info(
        asr=[AsrProgram(**artifact("rocky-relay-stt", "Rocky Relay speech to text"),
                        models=[AsrModel(**artifact(model("stt"), "speech to text model"), languages=languages)],
                        supports_transcript_streaming=True)],
        tts=[TtsProgram(**artifact("rocky-relay-tts", "Rocky Relay voice"),
                        voices=[TtsVoice(**artifact(model("tts"), "Rocky's voice"), languages=languages)],
                        supports_synthesize_streaming=True)],
        handle=[HandleProgram(**artifact("rocky-relay", "Rocky (LLM and persona) as a conversation agent"),
                              models=[HandleModel(**artifact(model("llm"), "conversation model"),
                                                  languages=languages)],
                              supports_handled_streaming=True)],
    )


def sentences(text: str) -> list[str]:
    """Text cut after each sentence's end, so the first one is spoken while the rest is synthesised."""
    return [s for s in re.split(r"(?<=[.!?;:])\s+", text.strip()) if s]


def text_of(event: Event) -> str:
    text = event.data.get("text")
    if not isinstance(text, str):
        raise WyomingProtocolError(f"{event.type} without a text")
    if len(text) > MAX_TEXT_CHARS:
        raise WyomingProtocolError(f"{event.type}: text of {len(text)} characters (at most {MAX_TEXT_CHARS})")
    return text
