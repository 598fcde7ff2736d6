"""The LLM actor: answers final transcripts, streaming the reply token by token.

Subscribes to `stt.final`; publishes `llm.token` pieces as they come and one
`llm.done`. An interrupt for the turn stops generation at the next token.
Work before release (`speculate`): a partial transcript prefills the prompt
with the words heard so far; a *settled* one (VAD heard speech stop) starts
the reply at once, but its tokens are held back until the final transcript
arrives. Same words: they go out at once and generation goes on live.
Other words, new speech, or an interrupt: they are thrown away unsent, so a
discarded reply can never reach TTS or the speaker.
Conversation memory is kept per session and trimmed to a token budget; it
holds what Rocky actually said: when playback is stopped, only the clauses
(from `say`) that were played to their end stay in it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from actors.base import Actor, on
from actors.languages import ONLY_ENGLISH, answer_language, reply_language
from actors.llm_backends import Generator, make_generator
from actors.llm_commands import REPLIES, fixed_pieces, spoken_command
from actors.llm_memory import ConversationMemory
from actors.llm_prompt import Conversation, sayable, words_of
from actors.llm_settings import LlmSettings
from actors.llm_tools import ToolBox
from bus.codec import Envelope
from bus.messages import (
    Interrupt,
    LlmDone,
    LlmToken,
    Message,
    NewConversation,
    PlayerEvent,
    Say,
    ToolCatalog,
    ToolResult,
    Transcript,
    VadEvent,
)

MAX_TRANSCRIPT_CHARS = 4000
"""Longer input is refused: a minute of speech is ~1000 characters, and the model's context is small."""
MAX_CLAUSES = 256
MAX_CLAUSE_CHARS = 1000
"""Spoken clauses kept per turn, and characters per clause: memory stays bounded whatever `say` carries."""
MAX_SPECULATIONS = 8
"""Turns whose speculative reply is held at once (one per turn: a newer partial replaces it)."""


def same_words(a: str, b: str) -> bool:
    """Transcripts that ask the same thing: equal once case and punctuation are ignored."""
    return words_of(a) == words_of(b)


def same_question(a: Transcript, b: Transcript) -> bool:
    """The same words heard in the same language: a reply begun in Spanish must not answer the same words
    heard, at the final, as English."""
    return same_words(a.text, b.text) and a.language == b.language


@dataclass
class Speculation:
    """A reply begun on a settled partial, held back until the final transcript says whether it stands."""

    text: str
    language: str = ""
    """The language the partial was heard in: the reply was asked for in it."""
    pieces: list[str] = field(default_factory=list)
    complete: bool = False
    """Generation ran to its end before the final came."""


class LlmActor(Actor):
    name: ClassVar[str] = "llm"
    delivered_when_cancelled = (PlayerEvent,)  # the player's `stopped` says what was played
    admits = (Transcript,)  # a final transcript is a new turn: the queue that `max_queued_turns` bounds

    def __init__(self, settings: LlmSettings, generator: Generator | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.generator = generator
        self.memory = ConversationMemory(settings.history_tokens, state_dir=settings.memory_dir)
        self.clauses: dict[tuple[str, int], dict[int, str]] = {}
        """Spoken clauses of recent turns, to keep only what was played."""
        self.speculations: dict[tuple[str, int], Speculation] = {}
        self.tools = ToolBox(settings.tools)

    def on_start(self) -> None:
        if self.generator is None:
            self.generator = make_generator(self.settings)
        self.memory.counter = self.generator
        self.tools.start(self)

    def on_idle(self) -> None:
        self.tools.keep_warm(self)

    def on_control(self, env: Envelope) -> None:
        if isinstance(env.msg, ToolCatalog):  # the tools on offer (a control topic: every replica takes it)
            self.tools.update(env.msg.tools)

    @on(ToolResult)
    def _late_result(self, msg: ToolResult, _payload: bytes = b"") -> None:
        """A tool's answer after its call gave up waiting (actors/llm_tools.py): nobody is asking any more."""

    def backend(self) -> str:
        return self.generator.description if self.generator else self.settings.backend

    def starts_turn(self, msg: Message) -> bool:
        return isinstance(msg, Transcript) and msg.final

    @on(Transcript)
    def _heard(self, msg: Transcript, _payload: bytes) -> None:
        if not msg.text.strip():
            return
        if msg.final:
            self._answer(msg)
        elif self.settings.speculate and self.settings.streaming:
            self._before_release(msg)

    @on(VadEvent)
    def _speech_news(self, msg: VadEvent, _payload: bytes) -> None:
        """Nothing to do here: speech starting again matters only to a reply begun before the release,
        which looks for it in the queue while it generates (`_newer_news`)."""

    def on_interrupt(self, msg: Interrupt) -> None:
        self.speculations.pop((msg.session, msg.turn), None)
        self.log.info("interrupted", session=msg.session, turn=msg.turn)

    # --- memory of what was really said ------------------------------------------------
    @on(Say)
    def _remember_clause(self, msg: Say, _payload: bytes = b"") -> None:
        if 0 <= msg.index < MAX_CLAUSES:
            self.clauses.setdefault((msg.session, msg.turn), {})[msg.index] = msg.text[:MAX_CLAUSE_CHARS]
        while len(self.clauses) > 16:
            self.clauses.pop(next(iter(self.clauses)))

    @on(PlayerEvent)
    def _played(self, msg: PlayerEvent, _payload: bytes = b"") -> None:
        key = (msg.session, msg.turn)
        if msg.state == "stopped":
            said = self.clauses.get(key, {})
            # Over the clauses held, not range(clauses_played): that count comes off the bus.
            played = " ".join(said[i] for i in sorted(said) if i < msg.clauses_played)
            self.memory.replace(msg.session, msg.turn, played)
            self.log.info("memory_trimmed_to_played", turn=msg.turn, played=played)
        if msg.state in ("stopped", "finished"):
            self.clauses.pop(key, None)

    @on(NewConversation)
    def _new_conversation(self, msg: NewConversation, _payload: bytes = b"") -> None:
        self.memory.forget(msg.session, msg.forget)
        self.log.info("conversation_forgotten", session=msg.session, forget=msg.forget)

    def _needs_no_model(self, msg: Transcript) -> bool:
        """A command ("start over") or a language no voice speaks: answered with a fixed line, not generated
        (nor begun before the release)."""
        return spoken_command(msg.text) is not None or not answer_language(msg.language)[1]

    def _fixed_reply(self, msg: Transcript) -> bool:
        """Answer without the model when `msg` is a spoken command ("start over") or in a language no voice
        here speaks; True when it was answered so."""
        if not self._needs_no_model(msg):
            return False
        command = spoken_command(msg.text)
        if command is not None:
            self.memory.forget(msg.session, command)
        reply = REPLIES[command] if command is not None else ONLY_ENGLISH
        self.speculations.pop((msg.session, msg.turn), None)
        pieces = fixed_pieces(reply)
        for index, piece in enumerate(pieces):
            self.publish(LlmToken(session=msg.session, turn=msg.turn, text=piece, index=index))
        exchanges, tokens = self.memory.length(msg.session)
        self.log.info("replied_without_model", turn=msg.turn, reply=reply, command=command, language=msg.language)
        self.publish(LlmDone(session=msg.session, turn=msg.turn, text=reply, tokens=len(pieces),
                             conversation_exchanges=exchanges, conversation_tokens=tokens))
        return True

    # --- work before release -------------------------------------------------------------
    def _conversation(self, msg: Transcript) -> Conversation:
        return Conversation(msg.text.strip(), tuple(self.memory.history(msg.session)), self.settings.style,
                            summary=self.memory.summary(msg.session), language=answer_language(msg.language)[0],
                            tools=self.tools.schemas())

    def _newer_news(self, msg: Transcript) -> bool:
        """Work on `msg` should stop: a later transcript of its turn with other words or VAD hearing speech
        again (a final with the same words is what confirms them), or another turn's final waiting (a
        question someone asked comes before a guess at one still being asked)."""
        self.check_control()
        key = (msg.session, msg.turn)

        def stale(m: Message) -> bool:
            if (m.session, m.turn) != key:
                return isinstance(m, Transcript) and m.final
            return ((isinstance(m, Transcript) and not (m.final and same_question(m, msg)))
                    or (isinstance(m, VadEvent) and m.speech))

        return self.pending(stale)

    def _before_release(self, partial: Transcript) -> None:
        assert self.generator is not None
        key = (partial.session, partial.turn)
        if len(partial.text) > MAX_TRANSCRIPT_CHARS or self._needs_no_model(partial) or self._newer_news(partial):
            return
        conversation = self._conversation(partial)
        if not partial.settled:
            self.generator.prefill(conversation)
            return
        speculation = Speculation(partial.text, language=partial.language)
        self.speculations.pop(key, None)
        self.speculations[key] = speculation
        while len(self.speculations) > MAX_SPECULATIONS:
            self.speculations.pop(next(iter(self.speculations)))
        stream = self.generator.stream(conversation)
        for piece in stream:
            speculation.pieces.append(piece)
            self.check_control()
            if self.is_cancelled(*key) or self.stopping:
                self.speculations.pop(key, None)
                return
            final = self.take_pending(lambda m: isinstance(m, Transcript) and m.final
                                      and (m.session, m.turn) == key and same_question(m, partial))
            if final is not None:  # confirmed while still generating: go on live
                assert isinstance(final.msg, Transcript)
                self.speculations.pop(key, None)
                tokens = self.generator.prompt_tokens(self._conversation(final.msg))
                self._reply(final.msg, speculation.pieces, stream, tokens, speculated=True)
                return
            if self._newer_news(partial):  # other words or more speech: never sent, never heard
                self.speculations.pop(key, None)
                self.log.info("speculation_discarded", turn=partial.turn, text=partial.text)
                return
        speculation.complete = True

    # --- the answer ----------------------------------------------------------------------
    def _answer(self, msg: Transcript) -> None:
        assert self.generator is not None
        if self._fixed_reply(msg):
            return
        if len(msg.text) > MAX_TRANSCRIPT_CHARS:
            self.fail_turn(msg, f"the question is too long: {len(msg.text)} characters, at most "
                                f"{MAX_TRANSCRIPT_CHARS}")
            return
        speculation = self.speculations.pop((msg.session, msg.turn), None)
        conversation = self._conversation(msg)
        prompt_tokens = self.generator.prompt_tokens(conversation)
        if (speculation and speculation.complete and same_words(speculation.text, msg.text)
                and speculation.language == msg.language):
            self._reply(msg, speculation.pieces, iter(()), prompt_tokens, speculated=True)
            return
        if speculation:
            self.log.info("speculation_discarded", turn=msg.turn, text=speculation.text, final=msg.text)
        if prompt_tokens >= self.settings.context_tokens:
            self.fail_turn(msg, f"the question is too long for the model: the prompt takes {prompt_tokens} "
                                f"tokens of the {self.settings.context_tokens} its context holds")
            return
        self._reply(msg, [], self.generator.stream(conversation), prompt_tokens)

    def _reply(self, msg: Transcript, ready: Iterable[str], stream: Iterator[str], prompt_tokens: int,
               speculated: bool = False) -> None:
        """Publish the pieces already made, then the rest as it comes; then remember and report the reply."""
        assert self.generator is not None
        arrived = time.perf_counter()
        pieces: list[str] = []
        first_token_ms = 0.0
        cancelled = False
        language = reply_language(msg.language)
        for piece in map(sayable, self.tools.turn(self, msg, ready, stream)):
            if not piece:
                continue
            if not pieces:
                first_token_ms = 1000.0 * (time.perf_counter() - arrived)
            if self.settings.streaming:
                self.publish(LlmToken(session=msg.session, turn=msg.turn, text=piece, index=len(pieces),
                                      language=language))
            pieces.append(piece)
            self.check_control()
            if self.is_cancelled(msg.session, msg.turn) or self.stopping:
                cancelled = True
                break
        cancelled = cancelled or self.is_cancelled(msg.session, msg.turn)  # e.g. during a tool call
        if not self.settings.streaming and not cancelled:  # sequential: the whole reply at once
            for index, piece in enumerate(pieces):
                self.publish(LlmToken(session=msg.session, turn=msg.turn, text=piece, index=index,
                                      language=language))
        reply = "".join(pieces).strip()
        total_ms = 1000.0 * (time.perf_counter() - arrived)
        if not cancelled:
            self.memory.add(msg.session, msg.text.strip(), reply, self.generator, turn=msg.turn)
        exchanges, memory_tokens = self.memory.length(msg.session)
        self.log.info("replied", turn=msg.turn, reply=reply, tokens=len(pieces), speculated=speculated,
                      first_token_ms=round(first_token_ms, 1), total_ms=round(total_ms, 1))
        self.publish(LlmDone(session=msg.session, turn=msg.turn, text=reply, tokens=len(pieces),
                             prompt_tokens=prompt_tokens,
                             first_token_ms=first_token_ms, total_ms=total_ms, cancelled=cancelled,
                             speculated=speculated, conversation_exchanges=exchanges,
                             conversation_tokens=memory_tokens, language=language))
