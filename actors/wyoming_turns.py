"""The bus side of the wyoming actor: what a Wyoming operation's turn has heard, and how it reaches the loop.

Two threads, one socket each (ZeroMQ sockets are not thread-safe): the actor's own loop reads the bus and
hands every message of a `wyoming-*` session to `Gate.deliver`, which passes it to the asyncio loop with
`call_soon_threadsafe`; the asyncio loop publishes through a client of its own (a PUB send never blocks).
So the loop never waits on the bus, and `describe` is answered while any turn runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from actors.llm_prompt import words_of
from actors.wyoming_settings import WyomingSettings
from bus.messages import AudioChunk, Interrupt, LlmDone, Message, PlayerEvent, Say, Transcript, TurnError
from bus.push_to_talk import new_turn_id
from bus.sockets import BusClient

INTERRUPTED = "interrupted"
"""The stage named when an interrupt, not a stage's error, ended one of our turns."""


class TurnStalled(Exception):
    """A turn heard nothing for the operation's timeout."""


@dataclass
class TurnWatch:
    """Everything one turn of ours has heard so far; `news` waits for more."""

    session: str
    turn: int
    transcript: Transcript | None = None
    partial: str = ""
    says: list[Say] = field(default_factory=list)
    said_last: bool = False
    reply: LlmDone | None = None
    chunks: list[tuple[AudioChunk, bytes]] = field(default_factory=list)
    chunk_last: bool = False
    error: TurnError | None = None
    frames: int = 0
    """Mic frames sent for it (a transcription)."""
    last_news: float = field(default_factory=time.monotonic)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    """Whoever waits for the next message (a reply's audio may have two: its hold and its synthesize)."""

    def feed(self, msg: Message, payload: bytes) -> None:
        """Runs on the loop (see `Gate.deliver`)."""
        if isinstance(msg, Transcript):
            if msg.final and msg.source == "speech":
                self.transcript = msg
            elif not msg.final:
                self.partial = msg.text
        elif isinstance(msg, Say):
            if not any(s.index == msg.index for s in self.says):
                self.says.append(msg)
            self.said_last = self.said_last or msg.last
        elif isinstance(msg, LlmDone):
            self.reply = msg
        elif isinstance(msg, AudioChunk):
            self.chunks.append((msg, payload))
            self.chunk_last = self.chunk_last or msg.last
        elif isinstance(msg, TurnError) and (self.error is None or self.error.stage == INTERRUPTED):
            self.error = msg  # a stage's own reason says more than the interrupt that came with it
        elif isinstance(msg, Interrupt) and self.error is None:  # e.g. the logger ended a stalled turn
            self.error = TurnError(session=self.session, turn=self.turn, stage=INTERRUPTED,
                                   reason=f"the turn was interrupted ({msg.reason})")
        self.last_news = time.monotonic()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    @property
    def spoken_text(self) -> str:
        return " ".join(s.text for s in sorted(self.says, key=lambda s: s.index) if s.text)

    async def news(self, timeout_s: float) -> None:
        """Wait for the next message of the turn; `TurnStalled` after `timeout_s` without one. Callers check
        what they wait for and then call this with no `await` between, so no message slips past."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError as exc:
            raise TurnStalled(f"the assistant made no progress on {self.session} for {timeout_s:g} s "
                              "(see logs/actors/*.log)") from exc


class Gate:
    """Routes bus messages to the turns the loop watches, and publishes for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, publisher: BusClient) -> None:
        self.loop = loop
        self.publisher = publisher
        self.watches: dict[tuple[str, int], TurnWatch] = {}
        self.lock = threading.Lock()
        self.last_turn = 0
        self.backends: dict[str, str] = {}
        """Actor -> the backend its `Ready` announced (for `info`); written by the actor's thread."""

    def open(self, session: str) -> TurnWatch:
        """A new turn of `session` whose messages are routed here (loop thread only)."""
        self.last_turn = new_turn_id(self.last_turn)
        watch = TurnWatch(session, self.last_turn)
        with self.lock:
            self.watches[(session, watch.turn)] = watch
        return watch

    def close(self, watch: TurnWatch) -> None:
        with self.lock:
            self.watches.pop((watch.session, watch.turn), None)

    def deliver(self, msg: Message, payload: bytes) -> None:
        """From the actor's thread: hand a message of one of our turns to the loop."""
        with self.lock:
            watch = self.watches.get((msg.session, msg.turn))
        if watch is not None:
            self.loop.call_soon_threadsafe(watch.feed, msg, payload)

    def publish(self, msg: Message, payload: bytes = b"") -> None:
        """Loop thread only: the publisher socket belongs to it."""
        self.publisher.publish(msg, payload)

    def played(self, watch: TurnWatch, state: str, audio_ms: float = 0.0, device: str = "wyoming") -> None:
        """Stand in for a player: the audio went to (or was dropped by) a Wyoming client. The logger's record
        takes first audio, the end of playback and a barge-in from these, as from a satellite's player."""
        self.publish(PlayerEvent(session=watch.session, turn=watch.turn, state=state,  # type: ignore[arg-type]
                                 audio_ms=audio_ms, device=device))


@dataclass
class Door:
    """What every connection of one server shares."""

    settings: WyomingSettings
    gate: Gate
    version: str
    info: Any = None
    """A callable giving the `info` event (the actor builds it from the backends announced)."""
    held: list[TurnWatch] = field(default_factory=list)
    """Conversation replies whose audio waits for a `synthesize` of the same words."""
    connections: int = 0
    holds: set[asyncio.Task[None]] = field(default_factory=set)

    def claim(self, text: str, prefix: bool = False) -> TurnWatch | None:
        """The held reply whose words are `text`'s (with `prefix`: begin with them), taken out of the hold."""
        wanted = words_of(text)
        for watch in self.held:
            said = words_of(watch.spoken_text)
            if wanted and (said[: len(wanted)] if prefix else said) == wanted:
                self.held.remove(watch)
                return watch
        return None

    def unhold(self, watch: TurnWatch) -> None:
        if watch in self.held:
            self.held.remove(watch)

    async def hold(self, watch: TurnWatch) -> None:
        """Keep a reply's audio for its `synthesize` (it is held from its first clause, see `claim`);
        unclaimed, end its record as played to nobody."""
        try:
            while not (watch.chunk_last or watch.error):
                await watch.news(self.settings.op_timeout_s)
            await asyncio.sleep(self.settings.reply_hold_s)
        except TurnStalled:
            pass
        if watch in self.held:
            self.held.remove(watch)
            self.gate.played(watch, "finished", device="wyoming (reply audio not fetched)")
            self.gate.close(watch)
