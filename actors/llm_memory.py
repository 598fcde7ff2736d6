"""The llm actor's conversation memory: past exchanges per session, newest last, under a token budget.

It holds what Rocky actually said: `replace` keeps only the clauses that were played when playback stopped.
Exchanges pushed out of the budget are not silently dropped: their questions' key words are folded into one
short summary line at the head ("Earlier the user asked about: erid, ship engine."), which the prompt carries.
The summary is extractive (no model call), so a turn's first token waits for nothing new.

With a state directory each session is saved to its own file there (mode 0600, written to a temporary file
and renamed, so a crash leaves the old file or the new one, never half of one) and read back the first time
the session speaks after a restart: memory outlives the llm process. The file is named by a hash of the
session, so no session name can reach outside the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from actors.llm_prompt import words_of
from bus.privacy import PRIVATE_MODE

log = structlog.get_logger("llm.memory")

MAX_SESSIONS = 64
"""Sessions held in memory; the least recently used is forgotten past this (its file stays)."""
MAX_SESSION_FILES = 256
"""Session files kept in the state directory; the least recently written are deleted past this."""
MAX_FILE_BYTES = 256_000
"""A bigger session file is not read (it cannot be one of ours: the budget keeps them small)."""
MAX_SUMMARY_WORDS = 24
"""Key words the summary line keeps, the newest; a long conversation's summary stays one short line."""
STATE_DIR_ENV = "ROCKY_RELAY_STATE_DIR"
"""When set, a relative `llm.memory_dir` is under this directory instead of the working one (the tests give
each test its own, so no test hears another's conversation)."""
SUMMARY_HEAD = "Earlier the user asked about:"
_STOPWORDS_TEXT = """a an and are as at be but by can could did do does for from had has have how i if in is
it its me my of on or our please rocky so tell than that the their them then there these they this to us was we
were what when where which who whom why will with would you your yes no not just about hi hello hey ok okay
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
"""Words that say nothing about what a question was about."""


class TokenCounter(Protocol):
    def count_tokens(self, text: str) -> int: ...


def rough_tokens(text: str) -> int:
    """A token count when no model is at hand: about four characters a token for English."""
    return max(1, len(text) // 4) if text else 0


def state_path(state_dir: str | Path) -> Path | None:
    """Where the session files go: `state_dir`, a relative one under $ROCKY_RELAY_STATE_DIR when set."""
    if not state_dir:
        return None
    path = Path(state_dir).expanduser()
    root = os.environ.get(STATE_DIR_ENV, "")
    return Path(root) / path if root and not path.is_absolute() else path


@dataclass
class SessionMemory:
    exchanges: list[tuple[int, str, str]] = field(default_factory=list)
    """(turn, what the user said, what Rocky said), oldest first."""
    summary_words: list[str] = field(default_factory=list)
    """Key words of the questions folded out of `exchanges`, oldest first."""

    def summary(self) -> str:
        return f"{SUMMARY_HEAD} {', '.join(self.summary_words)}." if self.summary_words else ""

    def fold(self, user: str) -> None:
        """Keep the key words of a question leaving the memory (each once, the newest last)."""
        for word in words_of(user):
            if word in STOPWORDS or (len(word) < 3 and not word.isdigit()):
                continue
            if word in self.summary_words:
                self.summary_words.remove(word)
            self.summary_words.append(word)
        del self.summary_words[:-MAX_SUMMARY_WORDS]


class ConversationMemory:
    """Past exchanges per session, newest last, kept under a token budget; saved per session if told where."""

    def __init__(self, budget_tokens: int, max_sessions: int = MAX_SESSIONS, state_dir: str | Path = "") -> None:
        self.budget_tokens = budget_tokens
        self.max_sessions = max_sessions
        self.state_dir = state_path(state_dir)
        self.sessions: dict[str, SessionMemory] = {}
        self.counter: TokenCounter | None = None
        """The model's tokenizer (set once it is loaded); until then a rough count."""

    # --- reading ----------------------------------------------------------------------
    def history(self, session: str) -> list[tuple[str, str]]:
        return [(user, reply) for _turn, user, reply in self._session(session).exchanges]

    def summary(self, session: str) -> str:
        """The folded summary line of what left the memory; empty when nothing has."""
        return self._session(session).summary()

    def length(self, session: str) -> tuple[int, int]:
        """(exchanges held, tokens they and the summary take)."""
        memory = self._session(session)
        return len(memory.exchanges), self._tokens(memory)

    # --- changing ---------------------------------------------------------------------
    def add(self, session: str, user: str, reply: str, generator: TokenCounter | None = None,
            turn: int = 0) -> None:
        if not reply.strip():
            return
        if generator is not None:
            self.counter = generator
        memory = self._session(session)
        memory.exchanges.append((turn, user, reply.strip()))
        self._fit(memory)
        self._save(session, memory)

    def replace(self, session: str, turn: int, reply: str) -> None:
        """Keep only `reply` for `turn` (what was really played); drop the exchange if nothing was."""
        memory = self._session(session)
        for i, (t, user, _old) in enumerate(memory.exchanges):
            if t == turn:
                if reply.strip():
                    memory.exchanges[i] = (t, user, reply.strip())
                else:
                    del memory.exchanges[i]
                self._save(session, memory)
                return

    def forget(self, session: str, what: str = "all") -> None:
        """"last": drop the newest exchange ("forget that"); "all": a new conversation, summary and all."""
        memory = self._session(session)
        if not memory.exchanges and not memory.summary_words:
            return  # nothing to forget: no file is written for a session that never spoke
        if what == "last":
            if memory.exchanges:
                memory.exchanges.pop()
        else:
            memory.exchanges.clear()
            memory.summary_words.clear()
        self._save(session, memory)

    # --- inside -----------------------------------------------------------------------
    def _fit(self, memory: SessionMemory) -> None:
        """Fold the oldest exchanges into the summary until all fits the budget; the summary itself keeps to
        a quarter of it (its oldest words go first), so it never crowds out the exchanges."""
        count = self.counter.count_tokens if self.counter else rough_tokens
        while memory.exchanges and self._tokens(memory) > self.budget_tokens:
            memory.fold(memory.exchanges.pop(0)[1])
            while memory.summary_words and count(memory.summary()) > self.budget_tokens // 4:
                memory.summary_words.pop(0)

    def _tokens(self, memory: SessionMemory) -> int:
        count = self.counter.count_tokens if self.counter else rough_tokens
        summary = memory.summary()
        return (count(summary) if summary else 0) + sum(count(f"{u}\n{r}\n") for _t, u, r in memory.exchanges)

    def _session(self, session: str) -> SessionMemory:
        memory = self.sessions.pop(session, None)
        if memory is None:
            memory = self._load(session)
        self.sessions[session] = memory  # most recently used last
        while len(self.sessions) > self.max_sessions:
            self.sessions.pop(next(iter(self.sessions)))
        return memory

    def path_for(self, session: str) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / f"{hashlib.sha256(session.encode('utf-8')).hexdigest()[:32]}.json"

    def _load(self, session: str) -> SessionMemory:
        path = self.path_for(session)
        if path is None or not path.is_file():
            return SessionMemory()
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"{path.stat().st_size} bytes, at most {MAX_FILE_BYTES}")
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("session") != session:
                raise ValueError("it belongs to another session")
            exchanges = [(int(t), str(u), str(r)) for t, u, r in data["exchanges"]]
            words = [str(w) for w in data.get("summary_words", [])][-MAX_SUMMARY_WORDS:]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a bad file costs the memory, not the turn
            log.warning("memory_file_unreadable", path=str(path), reason=str(exc))
            return SessionMemory()
        memory = SessionMemory(exchanges, words)
        self._fit(memory)  # the budget may be smaller since
        return memory

    def _save(self, session: str, memory: SessionMemory) -> None:
        path = self.path_for(session)
        if path is None:
            return
        data = json.dumps({"session": session, "exchanges": memory.exchanges,
                           "summary_words": memory.summary_words}, ensure_ascii=False)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, PRIVATE_MODE)  # os.open's mode is filtered by the umask; never wider than 0600
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk: the conversation goes on, unsaved
            log.warning("memory_not_saved", path=str(path), reason=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._bound_files()

    def _bound_files(self) -> None:
        assert self.state_dir is not None
        files = sorted(self.state_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in files[:-MAX_SESSION_FILES]:
            with contextlib.suppress(OSError):
                old.unlink()
