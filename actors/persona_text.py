"""Pure text helpers for the persona actor: Rocky-speak rewriting and clause splitting.

No I/O and no bus here, so every rule can be pinned down exactly by tests."""

from __future__ import annotations

import re
from functools import partial

_WS_RE = re.compile(r"\s+")
# Sentences are processed one at a time because the question, "good good" and
# "!" rules only make sense at a sentence's end.
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")

# Rocky speaks plainly; expanded forms also keep the later word rules simple.
_CONTRACTIONS: dict[str, str] = {
    "i'm": "I am", "you're": "you are", "it's": "it is", "don't": "do not", "can't": "cannot",
    "won't": "will not", "isn't": "is not", "that's": "that is", "let's": "let us",
}  # fmt: skip
# LLMs emit typographic apostrophes as often as ASCII ones.
_CONTRACTION_RE = re.compile(
    r"\b(?:" + "|".join(k.replace("'", "['\u2019]") for k in _CONTRACTIONS) + r")\b", re.IGNORECASE
)

# Rocky's word swaps, pattern -> replacement (case-insensitive; a capitalised
# match gets a capitalised replacement). "friend" is deliberately absent: Rocky
# says it as we do. Each pattern also matches its own output, so a second pass
# rewrites a swap into itself instead of growing it.
_WORD_SWAPS: dict[str, str] = {
    # An answer that opens with yes/yeah becomes its own little sentence.
    r"^(?:yes|yeah)\b(?:[\s,]+yes\b)*[.,!]*\s*": "Yes yes. ",
    # Approval at the very end of a statement is doubled.
    r"\b(?:good|great)(?:\s+(?:good|great))*(?=[.!]*$)": "good good",
    r"\b(?:thank you|thanks|thank,\s*thank)\b": "thank, thank",
}
_SWAP_RES = [(re.compile(p, re.IGNORECASE), r) for p, r in _WORD_SWAPS.items()]

# Lookbehind keeps "a" in "x-a" or "Plan-a" and "A" in "3A" from being read as articles.
_ARTICLE_RE = re.compile(r"(?<![\w'\u2019-])(?:a|an|the)\s+(?=\w)", re.IGNORECASE)
_CAPS_RE = re.compile(r"(\W*)([A-Z]{2,})(\W*)")
_BANG_RE = re.compile(r"(?<![\w'\u2019-])([A-Za-z][\w'\u2019-]*)(!+)$")
_CONJ_RE = re.compile(r",\s+(?=(?:and|but)\s)", re.IGNORECASE)
_MAX_SENTENCE_WORDS = 14
_TAG_RE = re.compile(r"\bquestion\?$", re.IGNORECASE)


def plain_transform(text: str) -> str:
    """The "none" persona: the LLM's words as they are, whitespace normalised."""
    return _WS_RE.sub(" ", text).strip()


def rocky_transform(text: str) -> str:
    """Rewrite English as Rocky speaks it; deterministic and stable when re-applied."""
    text = _expand_contractions(plain_transform(text))
    if not text:
        return ""
    out: list[str] = []
    for sentence in _SENTENCE_RE.split(text):
        for part in _split_long(sentence):
            # Questions keep their words so the ", question?" tag stays easy to hear.
            swapped = part if part.endswith("?") else _swap_words(part)
            # The yes swap may have started a new sentence that still needs a capital.
            for i, sub in enumerate(_SENTENCE_RE.split(swapped)):
                out.append(_rocky_sentence(_upper_first(sub) if i else sub))
    return " ".join(s for s in out if s)


def rocky_tidy(text: str) -> str:
    """The "rocky_llm" persona: fix the grammar of an LLM already asked for Rocky's phrasing.

    Only the rules that correct (contractions, long sentences, articles, the question tag) run; the ones
    that add flourishes (yes yes, good good, thank thank, tripled words) are left to the LLM, which was asked
    for them, so they are not stacked on top of its own. Text `rocky_transform` has settled is left unchanged.
    """
    text = _expand_contractions(plain_transform(text))
    # Articles go before the split: dropping one can bring ", and" together, which a second pass would split.
    out = [_question_tag(part) for sentence in _SENTENCE_RE.split(text) if sentence
           for part in _split_long(_drop_articles(sentence))]
    return " ".join(s for s in out if s)


def _rocky_sentence(sentence: str) -> str:
    # Order matters: articles go before emphasis so "the" is never tripled, and
    # the question tag comes last so nothing is appended after it.
    sentence = _drop_articles(sentence)
    sentence = _triple_caps(sentence)
    sentence = _triple_bang(sentence)
    return _question_tag(sentence)


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _core(word: str) -> str:
    return re.sub(r"\W", "", word).lower()


def _expand_contractions(text: str) -> str:
    def expand(m: re.Match[str]) -> str:
        full = _CONTRACTIONS[m[0].lower().replace("\u2019", "'")]
        return _upper_first(full) if m[0][0].isupper() else full

    return _CONTRACTION_RE.sub(expand, text)


def _split_long(sentence: str) -> list[str]:
    if len(sentence.split()) <= _MAX_SENTENCE_WORDS:
        return [sentence]
    parts = [p.strip() for p in _CONJ_RE.split(sentence) if p.strip()]
    # Every part but the last lost its ending to the split; give it a full stop.
    head = [p if p.endswith((".", "!", "?")) else p + "." for p in parts[:-1]]
    return [head[0], *(_upper_first(p) for p in head[1:] + parts[-1:])] if head else parts


def _swap_words(sentence: str) -> str:
    for rx, rep in _SWAP_RES:
        sentence = rx.sub(partial(_match_case, rep), sentence)
    return sentence.strip()


def _match_case(replacement: str, m: re.Match[str]) -> str:
    return _upper_first(replacement) if m[0][:1].isupper() else replacement


def _drop_articles(sentence: str) -> str:
    result = _ARTICLE_RE.sub("", sentence)
    if not re.search(r"\w", result):
        return sentence
    if _ARTICLE_RE.match(sentence) and sentence[0].isupper():
        result = _upper_first(result)
    return result


def _is_repeated(words: list[str], idx: int) -> bool:
    core = _core(words[idx])
    return any(0 <= j < len(words) and _core(words[j]) == core for j in (idx - 1, idx + 1))


def _triple_caps(sentence: str) -> str:
    # A sentence shouted entirely in capitals (or "OK." alone) has no single
    # word to emphasise; tripling every word would be noise. Our own question
    # tag is not the speaker's words: counting it would triple on a second pass.
    if not re.search(r"[a-z]", _TAG_RE.sub("", sentence)):
        return sentence
    words = sentence.split(" ")
    out: list[str] = []
    for idx, word in enumerate(words):
        m = _CAPS_RE.fullmatch(word)
        # After a number or in brackets capitals are a unit or a name, not a shout: "4:38 PM (UTC)".
        unit = (idx > 0 and any(c.isdigit() for c in words[idx - 1])) or word.startswith("(")
        if m and not unit and not _is_repeated(words, idx):
            word = f"{m[1]}{m[2]} {m[2]} {m[2]}{m[3]}"
        out.append(word)
    return " ".join(out)


def _triple_bang(sentence: str) -> str:
    m = _BANG_RE.search(sentence)
    if m is None:
        return sentence
    word, before = m[1], sentence[: m.start()]
    previous = before.split()
    if previous and _core(previous[-1]) == _core(word):
        return sentence
    # A word capitalised only because it opens the sentence is repeated in lower case.
    rep = word.lower() if not before and word[1:].islower() else word
    return f"{before}{word} {rep} {rep}{m[2]}"


def _question_tag(sentence: str) -> str:
    if not sentence.endswith("?") or _TAG_RE.search(sentence):
        return sentence
    body = sentence.rstrip("?").rstrip(" ,;:")
    return f"{body}, question?" if body else "Question?"


_HARD = ".!?;:\u2026"  # \u2026 is the ellipsis character
_SOFT = ",-\u2013\u2014"  # comma, hyphen, en dash, em dash
_CLOSERS = "\"')]}\u201d\u2019\u00bb"  # closing quotes and brackets
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "e.g.", "i.e."})
# Rocky ends questions with ", question?"; cutting at that comma would leave a
# lone "question?" clause with a pause before it.
_TAG = "question"


def _tag_follows(rest: str, final: bool) -> bool | None:
    """Whether `rest` starts with the question tag; None while too little is known."""
    rest = rest.lstrip().lower()
    n = len(_TAG)
    if len(rest) > n:
        return rest.startswith(_TAG) and not rest[n].isalnum()
    if final:
        return rest == _TAG
    return None if _TAG.startswith(rest) else False


_LEADS_ON = frozenset({"the", "a", "an", "of", "to", "in", "on", "at", "for", "from", "with", "and", "or",
                       "but", "my", "your", "our", "its", "their", "his", "her", "this", "that"})
"""Words that lead into the next one: an early first clause never ends on them ("Jupiter is the" would be
spoken as a phrase of its own, and Rocky-speak drops "the" only before its noun)."""


class ClauseSplitter:
    """Cuts a stream of LLM tokens into clauses for text-to-speech.

    Every cut decision depends only on the text up to a fixed point after the cut,
    never on how the stream was split into pieces, so feeding tokens one by one
    yields exactly the clauses that feeding the whole text would.
    """

    def __init__(self, min_chars: int = 12, max_chars: int = 160, first_clause_words: int = 0) -> None:
        if max_chars < 1 or min_chars < 0 or first_clause_words < 0:
            raise ValueError("ClauseSplitter needs max_chars >= 1, min_chars >= 0, first_clause_words >= 0")
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.first_clause_words = first_clause_words
        """When > 0, the first clause is cut after this many words even without punctuation:
        speech starts sooner, at some cost in phrasing. The clause after such a cut may be cut after twice
        as many words, and so on until punctuation ends one: each clause is then made (tokens and
        synthesis) while the one before it is spoken, so a short first clause does not leave a silence
        after it while a long second one is generated."""
        self.reset()

    def reset(self) -> None:
        self._buf = ""  # the pending clause; never starts with whitespace
        self._pos = 0  # next position of _buf to examine
        self._first = True
        self._cut_after = self.first_clause_words  # words after which this clause may be cut (0: never)
        self._cut_by_words = False

    def feed(self, piece: str) -> list[str]:
        self._buf += piece
        if self._pos == 0:
            self._buf = self._buf.lstrip()
        return self._scan(final=False)

    def flush(self) -> list[str]:
        out, rest = self._scan(final=True), self._buf.strip()
        self.reset()
        return [*out, rest] if rest else out

    def _scan(self, final: bool) -> list[str]:
        out: list[str] = []
        i = self._pos
        while i < len(self._buf):
            buf = self._buf
            if buf[i].isspace():
                cut = self._cut_before(buf[:i], buf[i], buf[i + 1 :], final)
                if cut is None:  # wait for the next piece to see what follows
                    break
                if cut:
                    out.append(self._emit(buf[:i], buf[i + 1 :]))
                    i = 0
                    continue
            if i >= self.max_chars:
                # Too long without a usable cut: break at the last space, or mid-word
                # only when a single "word" is longer than max_chars.
                space = next((j for j in range(i, 0, -1) if buf[j].isspace()), 0)
                head, tail = (buf[:space], buf[space + 1 :]) if space > 0 else (buf[:i], buf[i:])
                out.append(self._emit(head, tail))
                i = 0
                continue
            i += 1
        self._pos = i
        return out

    def _emit(self, head: str, tail: str) -> str:
        self._buf = tail.lstrip()
        self._first = False
        self._cut_after = 2 * self._cut_after if self._cut_by_words else 0
        self._cut_by_words = False
        return head.strip()

    def _cut_before(self, head: str, space: str, rest: str, final: bool) -> bool | None:
        clause = head.rstrip()
        if not any(c.isalnum() for c in clause):
            return False
        core = clause.rstrip(_CLOSERS)
        last = core[-1] if core else ""
        if last == "." and core.split()[-1].lower().lstrip("\"'(\u201c\u2018") in _ABBREVIATIONS:
            return False
        sentence_end = last in _HARD
        # The first clause goes out early so speech starts as soon as possible.
        words = len(clause.split())
        first_ok = self._first and (sentence_end or words >= 2)
        if not (first_ok or len(clause) >= self.min_chars):
            return False
        if (0 < self._cut_after <= words and last not in _SOFT and not sentence_end
                and core.split()[-1].lower() not in _LEADS_ON):
            self._cut_by_words = True
            return True
        if sentence_end or space == "\n":
            return True
        if last in _SOFT:
            tag = _tag_follows(rest, final)
            return None if tag is None else not tag
        return False
