"""Spoken conversation commands, handled by the llm actor without the model: "forget that", "start over".

A final transcript that is only a command (give or take "Rocky", "please" and "okay") changes the session's
memory and gets a short fixed reply, which flows on as any reply does (persona, TTS, player, record); the
model never sees it, so it costs no generation. A question that merely contains the words ("how do I start
over a car") is a question.
"""

from __future__ import annotations

from actors.llm_prompt import words_of
from bus.messages import Forget

COMMANDS: dict[tuple[str, ...], Forget] = {
    ("forget", "that"): "last",
    ("forget", "it"): "last",
    ("forget", "the", "last", "one"): "last",
    ("start", "over"): "all",
    ("new", "conversation"): "all",
    ("start", "a", "new", "conversation"): "all",
    ("forget", "everything"): "all",
}
"""What is said -> what is forgotten: the last exchange, or the whole conversation."""
REPLIES: dict[Forget, str] = {
    "last": "Forgotten. I no longer remember that.",
    "all": "Forgotten. New conversation.",
}
"""Rocky's fixed answers: short, and true for what was done."""
FILLERS = frozenset({"rocky", "please", "okay", "ok", "hey", "now", "and", "just"})
"""Words around a command that do not make it a question."""


def spoken_command(text: str) -> Forget | None:
    """What `text` asks to forget when it is only a command; None for anything else."""
    words = words_of(text)
    while words and words[0] in FILLERS:
        words.pop(0)
    while words and words[-1] in FILLERS:
        words.pop()
    return COMMANDS.get(tuple(words))


def fixed_pieces(reply: str) -> list[str]:
    """A fixed reply as the model's pieces would come: word by word, each after its space."""
    return [word if i == 0 else f" {word}" for i, word in enumerate(reply.split())]
