"""The bench's answer set: plain questions with the words that make a reply right, and the scoring.

The questions live in `launch/questions.toml` (package data) so they can be read and extended without
code. A reply is right when it holds one of the question's `accept` phrases as whole words and none of its
`reject` ones; case, punctuation and hyphens are ignored, so "Twenty-four." matches "twenty four".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from actors.llm_prompt import words_of

QUESTIONS_FILE = Path(__file__).resolve().parent / "questions.toml"


@dataclass(frozen=True)
class Question:
    ask: str
    accept: tuple[str, ...]
    reject: tuple[str, ...] = ()

    def is_right(self, reply: str) -> bool:
        words = f" {_words(reply)} "
        return (any(f" {_words(a)} " in words for a in self.accept)
                and not any(f" {_words(r)} " in words for r in self.reject))


def _words(text: str) -> str:
    return " ".join(words_of(text))


def load_questions(path: Path = QUESTIONS_FILE) -> list[Question]:
    """Every question of the set; a malformed entry is refused naming its number and what is wrong."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    questions: list[Question] = []
    for number, entry in enumerate(data.get("question", []), start=1):
        ask, accept, reject = entry.get("ask"), entry.get("accept"), entry.get("reject", [])
        if not isinstance(ask, str) or not ask.strip():
            raise ValueError(f"{path}: question {number} has no `ask` text")
        if not isinstance(accept, list) or not accept or not all(isinstance(a, str) and a.strip() for a in accept):
            raise ValueError(f"{path}: question {number} ({ask!r}) needs `accept`, a list of non-empty strings")
        if not isinstance(reject, list) or not all(isinstance(r, str) for r in reject):
            raise ValueError(f"{path}: question {number} ({ask!r}): `reject` must be a list of strings")
        questions.append(Question(ask.strip(), tuple(accept), tuple(reject)))
    if not questions:
        raise ValueError(f"{path}: no [[question]] entries")
    return questions


def score(questions: list[Question], replies: list[str]) -> int:
    """How many replies are right, question by question (a missing reply counts as wrong)."""
    return sum(1 for q, reply in zip(questions, replies, strict=False) if q.is_right(reply))
