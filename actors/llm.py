"""The LLM actor: answers final transcripts, streaming the reply token by token.

Subscribes to `stt.final`; publishes `llm.token` pieces as they come and one
`llm.done`. An interrupt for the turn stops generation at the next token.
Conversation memory is kept per session and trimmed to a token budget; it
holds what Rocky actually said: when playback is stopped, only the clauses
(from `say`) that were played to their end stay in it.
"""

from __future__ import annotations

import time
from typing import ClassVar

from actors.base import Actor
from actors.llm_backends import Generator, LlmSettings, build_prompt, make_generator
from bus.codec import Envelope
from bus.messages import Interrupt, LlmDone, LlmToken, PlayerEvent, Say, Transcript

MAX_TRANSCRIPT_CHARS = 4000
"""Longer input is refused: a minute of speech is ~1000 characters, and the model's context is small."""
MAX_SESSIONS = 64
"""Sessions remembered; the least recently used is forgotten past this."""
MAX_CLAUSES = 256
MAX_CLAUSE_CHARS = 1000
"""Spoken clauses kept per turn, and characters per clause: memory stays bounded whatever `say` carries."""


class ConversationMemory:
    """Past exchanges per session, newest last, kept under a token budget."""

    def __init__(self, budget_tokens: int, max_sessions: int = MAX_SESSIONS) -> None:
        self.budget_tokens = budget_tokens
        self.max_sessions = max_sessions
        self.sessions: dict[str, list[tuple[int, str, str]]] = {}

    def history(self, session: str) -> list[tuple[str, str]]:
        return [(user, reply) for _turn, user, reply in self.sessions.get(session, [])]

    def add(self, session: str, user: str, reply: str, generator: Generator, turn: int = 0) -> None:
        if not reply.strip():
            return
        exchanges = self.sessions.pop(session, [])
        self.sessions[session] = exchanges  # most recently used last
        while len(self.sessions) > self.max_sessions:
            self.sessions.pop(next(iter(self.sessions)))
        exchanges.append((turn, user, reply.strip()))
        while exchanges and sum(generator.count_tokens(f"User: {u}\nRocky: {r}\n")
                                for _t, u, r in exchanges) > self.budget_tokens:
            exchanges.pop(0)

    def replace(self, session: str, turn: int, reply: str) -> None:
        """Keep only `reply` for `turn` (what was really played); drop the exchange if nothing was."""
        exchanges = self.sessions.get(session, [])
        for i, (t, user, _old) in enumerate(exchanges):
            if t == turn:
                if reply.strip():
                    exchanges[i] = (t, user, reply.strip())
                else:
                    del exchanges[i]
                return


class LlmActor(Actor):
    name: ClassVar[str] = "llm"
    topics = ("stt.final", "say", "player")
    delivered_when_cancelled = (PlayerEvent,)  # the player's `stopped` says what was played
    admits = (Transcript,)  # a final transcript is a new turn: the queue that `max_queued_turns` bounds

    def __init__(self, settings: LlmSettings, generator: Generator | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.generator = generator
        self.memory = ConversationMemory(settings.history_tokens)
        self.clauses: dict[tuple[str, int], dict[int, str]] = {}
        """Spoken clauses of recent turns, to keep only what was played."""

    def on_start(self) -> None:
        if self.generator is None:
            self.generator = make_generator(self.settings)

    def backend(self) -> str:
        return self.generator.description if self.generator else self.settings.backend

    def handle(self, env: Envelope) -> None:
        msg = env.msg
        key = (msg.session, msg.turn)
        if isinstance(msg, Say):
            if 0 <= msg.index < MAX_CLAUSES:
                self.clauses.setdefault(key, {})[msg.index] = msg.text[:MAX_CLAUSE_CHARS]
            while len(self.clauses) > 16:
                self.clauses.pop(next(iter(self.clauses)))
            return
        if isinstance(msg, PlayerEvent):
            if msg.state == "stopped":
                said = self.clauses.get(key, {})
                # Over the clauses held, not range(clauses_played): that count comes off the bus.
                played = " ".join(said[i] for i in sorted(said) if i < msg.clauses_played)
                self.memory.replace(msg.session, msg.turn, played)
                self.log.info("memory_trimmed_to_played", turn=msg.turn, played=played)
            if msg.state in ("stopped", "finished"):
                self.clauses.pop(key, None)
            return
        if not isinstance(msg, Transcript) or not msg.text.strip():
            return
        assert self.generator is not None
        arrived = time.perf_counter()
        if len(msg.text) > MAX_TRANSCRIPT_CHARS:
            self.fail_turn(msg, f"the question is too long: {len(msg.text)} characters, at most "
                                f"{MAX_TRANSCRIPT_CHARS}")
            return
        prompt = build_prompt(self.memory.history(msg.session), msg.text.strip(), self.settings.style)
        if (prompt_tokens := self.generator.count_tokens(prompt)) >= self.settings.context_tokens:
            self.fail_turn(msg, f"the question is too long for the model: the prompt takes {prompt_tokens} "
                                f"tokens of the {self.settings.context_tokens} its context holds")
            return
        pieces: list[str] = []
        first_token_ms = 0.0
        cancelled = False
        for piece in self.generator.stream(prompt, msg.text):
            if not pieces:
                first_token_ms = 1000.0 * (time.perf_counter() - arrived)
            if self.settings.streaming:
                self.publish(LlmToken(session=msg.session, turn=msg.turn, text=piece, index=len(pieces)))
            pieces.append(piece)
            self.check_control()
            if self.is_cancelled(msg.session, msg.turn) or self.stopping:
                cancelled = True
                break
        if not self.settings.streaming and not cancelled:  # sequential: the whole reply at once
            for index, piece in enumerate(pieces):
                self.publish(LlmToken(session=msg.session, turn=msg.turn, text=piece, index=index))
        reply = "".join(pieces).strip()
        total_ms = 1000.0 * (time.perf_counter() - arrived)
        if not cancelled:
            self.memory.add(msg.session, msg.text.strip(), reply, self.generator, turn=msg.turn)
        self.log.info("replied", turn=msg.turn, reply=reply, tokens=len(pieces),
                      first_token_ms=round(first_token_ms, 1), total_ms=round(total_ms, 1))
        self.publish(LlmDone(session=msg.session, turn=msg.turn, text=reply, tokens=len(pieces),
                             prompt_tokens=prompt_tokens,
                             first_token_ms=first_token_ms, total_ms=total_ms, cancelled=cancelled))

    def on_interrupt(self, msg: Interrupt) -> None:
        self.log.info("interrupted", session=msg.session, turn=msg.turn)
