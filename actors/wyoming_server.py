"""One Wyoming connection: `describe`, speech to text, text to speech and the conversation agent.

Each operation is a turn of its own bus session, so the real stt, llm, persona and tts actors do the work
and the logger writes the same record as for a satellite's turn (this side stands in for the mic and the
player): in session `wyoming-asr` for a transcription, `wyoming-tts` for a synthesis, and `wyoming-c-<conversation
id>` for the conversation agent, whose memory the LLM keeps per session, so per conversation.

A transcription turn ends at its transcript: its reply is not wanted (Home Assistant sends the words to the
conversation agent next), so it is interrupted there, and its record says `interrupted`. A conversation
reply is spoken by our TTS while the LLM goes on; its audio is held for `reply_hold_s` and serves the
`synthesize` of the same words that Home Assistant sends next, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from typing import Any

import structlog
from wyoming.asr import Transcript as WyTranscript
from wyoming.asr import TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk as WyChunk
from wyoming.audio import AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop, NotHandled
from wyoming.ping import Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import SynthesizeStopped

from actors.wyoming_protocol import (
    ASR_SESSION,
    BUS_RATE,
    TTS_SESSION,
    FrameCutter,
    WyomingProtocolError,
    audio_format,
    conversation_session,
    read_event,
    sentences,
    text_of,
)
from actors.wyoming_turns import Door, TurnStalled, TurnWatch
from bus.messages import AudioFrame, ButtonEvent, CaptureEnd, Interrupt, Say, Transcript

log = structlog.get_logger("wyoming")
MAX_SPEECH_S = 60
"""The longest transcription taken (the stt actor keeps no more of a turn)."""


class WyomingHandler(AsyncEventHandler):
    def __init__(self, door: Door, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.door, self.gate, self.settings = door, door.gate, door.settings
        self.peer = str(writer.get_extra_info("peername"))
        self.asr: tuple[TurnWatch, FrameCutter] | None = None
        self.streaming: tuple[TurnWatch, asyncio.Task[None]] | None = None
        self.text_buffer = ""
        self.says = 0
        self.claimed = False
        """The streamed text is a held reply's: its audio plays, the text needs no synthesis."""
        self.current: TurnWatch | None = None
        """The turn this connection is in the middle of: cancelled if the client goes."""

    async def run(self) -> None:
        """Our read loop, not the library's: malformed input is refused with its reason, not taken as EOF."""
        self.door.connections += 1
        try:
            if self.door.connections > self.settings.max_connections:
                raise WyomingProtocolError(f"too many clients ({self.settings.max_connections}); try again")
            while True:
                quiet = self.settings.idle_timeout_s if (self.asr or self.streaming) else None
                event = await asyncio.wait_for(read_event(self.reader), quiet)
                if event is None or not await self.handle_event(event):
                    break
        except WyomingProtocolError as exc:
            log.warning("client_refused", peer=self.peer, reason=str(exc))
            await self._try_write(Error(text=str(exc), code="bad-request").event())
        except TurnStalled as exc:
            log.warning("turn_stalled", peer=self.peer, reason=str(exc))
            await self._try_write(Error(text=str(exc), code="timeout").event())
        except TimeoutError:
            log.warning("client_quiet", peer=self.peer, after_s=self.settings.idle_timeout_s)
            await self._try_write(Error(text="no audio or text for too long", code="timeout").event())
        except (ConnectionError, OSError) as exc:
            log.info("client_gone", peer=self.peer, reason=str(exc))
        finally:
            self.door.connections -= 1
            await self.disconnect()
            self.writer.close()

    async def _try_write(self, event: Event) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.write_event(event)

    async def disconnect(self) -> None:
        """The client went in the middle of a turn: stop the turn's work and end its record."""
        watch = self.current
        if watch is not None:
            self.current = None
            log.info("turn_abandoned", peer=self.peer, session=watch.session, turn=watch.turn)
            self.gate.publish(Interrupt(session=watch.session, turn=watch.turn, reason="wyoming client left"))
            self.gate.played(watch, "stopped")
            self.gate.close(watch)
            self.door.unhold(watch)
        if self.streaming is not None:
            self.streaming[1].cancel()

    async def handle_event(self, event: Event) -> bool:
        kind = event.type
        if kind == "describe":
            await self.write_event(self.door.info())
        elif kind == "ping":
            await self.write_event(Pong(text=event.data.get("text")).event())
        elif kind in ("audio-start", "audio-chunk", "audio-stop"):
            await self._asr(event)
        elif kind == "synthesize" and self.streaming is None:  # while streaming it is the compatibility copy
            await self._synthesize(text_of(event))
        elif kind == "synthesize-start":
            watch = self._begin(TTS_SESSION)
            self.streaming, self.says, self.text_buffer = (watch, asyncio.create_task(self._play(watch))), 0, ""
            self.claimed = False
        elif kind == "synthesize-chunk" and self.streaming is not None and not self.claimed:
            self._stream_text(self.streaming[0], text_of(event))
        elif kind == "synthesize-stop" and self.streaming is not None:
            watch, task = self.streaming
            if not self.claimed:
                self._say(watch, self.text_buffer, last=True)
            await task
            self.streaming = None
            await self.write_event(SynthesizeStopped().event())
        elif kind == "transcript":
            await self._converse(text_of(event), event.data.get("context") or {})
        # Anything else (transcribe, a newer client's events) is dropped, as the protocol asks.
        return True

    # --- turns ------------------------------------------------------------------------------
    def _begin(self, session: str) -> TurnWatch:
        self.current = self.gate.open(session)
        return self.current

    def _end(self, watch: TurnWatch) -> None:
        self.current = None
        self.gate.close(watch)

    async def _await(self, watch: TurnWatch, done: Any) -> None:
        """Wait until `done()` or the turn's error; TimeoutError when it shows no progress."""
        while not (done() or watch.error):
            await watch.news(self.settings.op_timeout_s)

    # --- speech to text ---------------------------------------------------------------------
    async def _asr(self, event: Event) -> None:
        if self.asr is None:
            if event.type == "audio-stop":
                raise WyomingProtocolError("audio-stop without audio-start")
            watch = self._begin(ASR_SESSION)
            self.asr = watch, FrameCutter(audio_format(event))
            self.gate.publish(ButtonEvent(session=watch.session, turn=watch.turn, pressed=True, source="script"))
        watch, cutter = self.asr
        if event.type == "audio-chunk":
            for frame in cutter.feed(event):
                self._frame(watch, frame)
            if cutter.samples > MAX_SPEECH_S * BUS_RATE:  # the stt keeps no more: a stuck stream is refused
                raise WyomingProtocolError(f"more than {MAX_SPEECH_S} s of audio in one transcription")
        elif event.type == "audio-stop":
            if rest := cutter.rest():
                self._frame(watch, rest)
            self.asr = None
            self.gate.publish(ButtonEvent(session=watch.session, turn=watch.turn, pressed=False, source="script"))
            self.gate.publish(CaptureEnd(session=watch.session, turn=watch.turn, frames=watch.frames,
                                         duration_ms=1000.0 * cutter.samples / 16000))
            await self._transcribed(watch)

    def _frame(self, watch: TurnWatch, pcm: bytes) -> None:
        self.gate.publish(AudioFrame(session=watch.session, turn=watch.turn, seq=watch.frames), pcm)
        watch.frames += 1

    async def _transcribed(self, watch: TurnWatch) -> None:
        await self._await(watch, lambda: watch.transcript is not None)
        if watch.transcript is None:
            assert watch.error is not None  # the stt ended the turn: its record says why
            await self.write_event(Error(text=watch.error.reason, code="stt").event())
            await self.write_event(WyTranscript(text="").event())
            self._end(watch)
            return
        text = watch.transcript.text
        await self.write_event(TranscriptStart(language=self.settings.language).event())
        # One chunk, the final text: Whisper's partials rewrite earlier words, and a chunk once sent stays.
        await self.write_event(TranscriptChunk(text=text).event())
        await self.write_event(TranscriptStop().event())
        await self.write_event(WyTranscript(text=text, language=self.settings.language).event())
        # The words go to the conversation agent next; this turn's own reply is not wanted.
        self.gate.publish(Interrupt(session=watch.session, turn=watch.turn, reason="transcribe only"))
        self.gate.played(watch, "stopped")
        self._end(watch)

    # --- text to speech ---------------------------------------------------------------------
    def _stream_text(self, watch: TurnWatch, text: str) -> None:
        """Streamed text: our own reply streaming back (Home Assistant pipes `handled-chunk`s into the TTS)
        takes that reply's audio, already being made; other text is spoken a sentence at a time."""
        self.text_buffer += text
        if self.says == 0 and (held := self.door.claim(self.text_buffer, prefix=True)) is not None:
            assert self.streaming is not None
            self.streaming[1].cancel()
            self.gate.close(watch)  # nothing was published for it: no record
            self.current, self.claimed = held, True
            self.streaming = held, asyncio.create_task(self._play(held))
            return
        *done, self.text_buffer = re.split(r"(?<=[.!?;:])\s+", self.text_buffer)
        for piece in done:
            self._say(watch, piece, last=False)

    def _say(self, watch: TurnWatch, text: str, last: bool) -> None:
        self.gate.publish(Say(session=watch.session, turn=watch.turn, text=text.strip(), index=self.says, last=last))
        self.says += 1

    async def _synthesize(self, text: str) -> None:
        held = self.door.claim(text)
        if held is not None:
            self.current = held
            await self._play(held)
            return
        watch = self._begin(TTS_SESSION)
        pieces, self.says = sentences(text) or [""], 0
        for i, piece in enumerate(pieces):
            self._say(watch, piece, last=i == len(pieces) - 1)
        await self._play(watch)

    async def _play(self, watch: TurnWatch) -> None:
        """The turn's audio to the client as it comes: audio-start (the voice's rate), chunks, audio-stop."""
        sent = samples = rate = 0
        while True:
            while sent < len(watch.chunks):  # by index: chunks may arrive while a write awaits
                chunk, pcm = watch.chunks[sent]
                sent += 1
                if not rate:
                    rate = chunk.sample_rate
                    await self.write_event(AudioStart(rate=rate, width=2, channels=1).event())
                    self.gate.played(watch, "started")
                if pcm:
                    await self.write_event(WyChunk(rate=rate, width=2, channels=1, audio=pcm).event())
                    samples += len(pcm) // 2
            if watch.chunk_last or watch.error:
                break
            await watch.news(self.settings.op_timeout_s)
        if rate:
            await self.write_event(AudioStop().event())
        if watch.error is not None and not watch.chunk_last:
            await self.write_event(Error(text=watch.error.reason, code="tts").event())
        else:
            self.gate.played(watch, "finished", audio_ms=1000.0 * samples / rate if rate else 0.0)
        self._end(watch)

    # --- the conversation agent -------------------------------------------------------------
    async def _converse(self, text: str, context: dict[str, Any]) -> None:
        conversation = str(context.get("conversation_id") or f"rocky-{uuid.uuid4().hex[:16]}")
        reply_context = {**context, "conversation_id": conversation}
        watch = self._begin(conversation_session(conversation))
        self.door.held.append(watch)  # from its first clause: a streaming TTS request may come for it
        started = time.monotonic()
        self.gate.publish(Transcript(session=watch.session, turn=watch.turn, text=text, source="typed"))
        await self.write_event(HandledStart(context=reply_context).event())
        sent = 0
        while True:
            while sent < len(watch.says):  # in arrival order: persona publishes its clauses in order
                say = watch.says[sent]
                if say.text:
                    await self.write_event(HandledChunk(text=(" " if sent else "") + say.text).event())
                sent += 1
            if watch.said_last or watch.error:
                break
            await watch.news(self.settings.op_timeout_s)
        await self.write_event(HandledStop().event())
        if watch.error is not None and not watch.said_last:
            await self.write_event(NotHandled(text=watch.error.reason, context=reply_context).event())
            self.door.unhold(watch)
            self._end(watch)
            return
        log.info("handled", session=watch.session, turn=watch.turn, ms=round(1000 * (time.monotonic() - started)))
        await self.write_event(Handled(text=watch.spoken_text, context=reply_context).event())
        self.current = None  # the reply is done; its audio now waits for a synthesize (or for nobody)
        hold = asyncio.get_running_loop().create_task(self.door.hold(watch))
        self.door.holds.add(hold)
        hold.add_done_callback(self.door.holds.discard)
