"""The persona actor: cuts the LLM's token stream into clauses and reshapes their words.

Subscribes to `llm.token` and `llm.done`; publishes `say` clauses as soon as
each is complete, so speech starts while the LLM is still generating. The
persona only changes words; the voice is the tts actor's. `rocky` rewrites
plain English into Rocky-speak by rule; `rocky_llm` expects an LLM prompted
for Rocky's phrasing (llm.style = rocky) and only tidies its grammar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from actors.base import Actor, on
from actors.persona_text import ClauseSplitter, plain_transform, rocky_tidy, rocky_transform
from bus.messages import LlmDone, LlmToken, Say

TRANSFORMS: dict[str, Callable[[str], str]] = {
    "none": plain_transform, "rocky": rocky_transform, "rocky_llm": rocky_tidy,
}


@dataclass
class PersonaSettings:
    style: str = "rocky"
    """rocky (Rocky-speak by rule), rocky_llm (the LLM speaks Rocky, needs llm.style = rocky; its grammar is
    only tidied) or none (the LLM's words as they are)."""
    min_clause_chars: int = 12
    """A clause shorter than this waits for more words (after the first), so TTS gets whole phrases."""
    first_clause_words: int = 2
    """Cut the first clause after this many words if no punctuation came yet (0: never), the next after
    twice as many, and so on until punctuation ends one. Each word is a token or two of waiting before the
    first sound: on the 2-core box, 2 words instead of 3 took ~60 ms off release -> first audio at p50 and
    the doubling kept every reply in the bench's answer set free of silences inside it
    (`playback_stalled_ms`)."""
    streaming: bool = True
    """Speak clause by clause (False: the sequential flow, one `say` with the whole reply)."""


class PersonaActor(Actor):
    name: ClassVar[str] = "persona"

    def __init__(self, settings: PersonaSettings) -> None:
        super().__init__()
        if settings.style not in TRANSFORMS:
            raise ValueError(f"persona.style {settings.style!r}: use one of {sorted(TRANSFORMS)}")
        self.settings = settings
        self.transform = TRANSFORMS[settings.style]
        self.splitters: dict[tuple[str, int], ClauseSplitter] = {}
        self.said: dict[tuple[str, int], int] = {}

    def backend(self) -> str:
        return self.settings.style

    @on(LlmToken)
    def _piece(self, msg: LlmToken, _payload: bytes) -> None:
        if not self.settings.streaming:  # sequential: one clause, the whole reply, once it is done
            return
        key = (msg.session, msg.turn)
        splitter = self.splitters.get(key)
        if splitter is None:
            splitter = self.splitters[key] = ClauseSplitter(
                min_chars=self.settings.min_clause_chars, first_clause_words=self.settings.first_clause_words)
            self._forget_old_turns()
        for clause in splitter.feed(msg.text):
            self._say(msg.session, msg.turn, clause, last=False, language=msg.language)

    @on(LlmDone)
    def _reply_done(self, msg: LlmDone, _payload: bytes) -> None:
        key = (msg.session, msg.turn)
        if not self.settings.streaming:
            if not msg.cancelled:
                self._say(msg.session, msg.turn, msg.text.strip(), last=True, language=msg.language)
                self.said.pop(key, None)
            return
        splitter = self.splitters.pop(key, ClauseSplitter())
        if not msg.cancelled:
            rest = splitter.flush()
            for i, clause in enumerate(rest):
                self._say(msg.session, msg.turn, clause, last=i == len(rest) - 1, language=msg.language)
            if not rest:  # close the turn downstream even when nothing is left to speak
                self._say(msg.session, msg.turn, "", last=True, language=msg.language)
        self.said.pop(key, None)

    def _say(self, session: str, turn: int, clause: str, last: bool, language: str = "") -> None:
        key = (session, turn)
        # Rocky's rules are English ones (dropping "a" would garble French "il a"): other languages pass as said.
        text = (self.transform(clause) if not language else clause) if clause else ""
        index = self.said.get(key, 0)
        self.said[key] = index + 1
        while len(self.said) > 16:  # turns whose llm.done never came
            self.said.pop(next(iter(self.said)))
        self.publish(Say(session=session, turn=turn, text=text, index=index, last=last, language=language))

    def _forget_old_turns(self) -> None:
        # A turn whose llm.done was lost must not keep its splitter forever.
        while len(self.splitters) > 16:
            self.splitters.pop(next(iter(self.splitters)))
