"""The LLM actor: answers final transcripts, streaming the reply token by token.

Subscribes to `stt.final`; publishes `llm.token` pieces as they come and one
`llm.done`. An interrupt for the turn stops generation at the next token.
Conversation memory is kept per session and trimmed to a token budget.
"""

from __future__ import annotations

import time
from typing import ClassVar

from actors.base import Actor
from actors.llm_backends import Generator, LlmSettings, build_prompt, make_generator
from bus.codec import Envelope
from bus.messages import Interrupt, LlmDone, LlmToken, Transcript


class ConversationMemory:
    """Past exchanges per session, newest last, kept under a token budget."""

    def __init__(self, budget_tokens: int) -> None:
        self.budget_tokens = budget_tokens
        self.sessions: dict[str, list[tuple[str, str]]] = {}

    def history(self, session: str) -> list[tuple[str, str]]:
        return list(self.sessions.get(session, []))

    def add(self, session: str, user: str, reply: str, generator: Generator) -> None:
        if not reply.strip():
            return
        exchanges = self.sessions.setdefault(session, [])
        exchanges.append((user, reply.strip()))
        while exchanges and sum(generator.count_tokens(f"User: {u}\nRocky: {r}\n")
                                for u, r in exchanges) > self.budget_tokens:
            exchanges.pop(0)


class LlmActor(Actor):
    name: ClassVar[str] = "llm"
    topics = ("stt.final",)

    def __init__(self, settings: LlmSettings, generator: Generator | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.generator = generator
        self.memory = ConversationMemory(settings.history_tokens)

    def on_start(self) -> None:
        if self.generator is None:
            self.generator = make_generator(self.settings)

    def backend(self) -> str:
        return self.generator.description if self.generator else self.settings.backend

    def handle(self, env: Envelope) -> None:
        msg = env.msg
        if not isinstance(msg, Transcript) or not msg.text.strip():
            return
        assert self.generator is not None
        arrived = time.perf_counter()
        prompt = build_prompt(self.memory.history(msg.session), msg.text.strip())
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
            self.memory.add(msg.session, msg.text.strip(), reply, self.generator)
        self.log.info("replied", turn=msg.turn, reply=reply, tokens=len(pieces),
                      first_token_ms=round(first_token_ms, 1), total_ms=round(total_ms, 1))
        self.publish(LlmDone(session=msg.session, turn=msg.turn, text=reply, tokens=len(pieces),
                             prompt_tokens=self.generator.count_tokens(prompt),
                             first_token_ms=first_token_ms, total_ms=total_ms, cancelled=cancelled))

    def on_interrupt(self, msg: Interrupt) -> None:
        self.log.info("interrupted", session=msg.session, turn=msg.turn)
