"""The llm actor's conversation memory: past exchanges per session, newest last, under a token budget.

It holds what Rocky actually said: `replace` keeps only the clauses that were played when playback stopped.
"""

from __future__ import annotations

from actors.llm_backends import Generator

MAX_SESSIONS = 64
"""Sessions remembered; the least recently used is forgotten past this."""


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
        while exchanges and sum(generator.count_tokens(f"{u}\n{r}\n")
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
