"""Whisper's decoder loop, cut off: a transcript that says its first words over again is those words once.

With the short encoder window (actors/stt_whisper.py `window_frames`) Whisper sometimes misses the end of the text
and says the question again until the token cap: "What is 2 plus 2? What is 2 plus 2?", "How many hours are
in a day? How many hours are in" (3 of the 60 bench recordings, 2026-12-02). The model then answers the
same question, but the record shows words nobody said and the loop's tokens cost decoding time. A run of at
least `MIN_WORDS` words followed only by itself again (the last copy may be cut short) is kept once; shorter
repeats ("no no", "bye bye") are speech.
"""

from __future__ import annotations

MIN_WORDS = 3
"""The shortest run taken for a loop: people do say two words twice."""


def _word(token: str) -> str:
    return "".join(c for c in token.lower() if c.isalnum())


def without_repeats(text: str) -> str:
    """`text` with a decoder loop (its first words said again, and again) cut to one copy."""
    tokens = text.split()
    words = [_word(t) for t in tokens]
    for period in range(MIN_WORDS, len(words) - MIN_WORDS + 1):
        tail = words[period:]
        if len(tail) >= MIN_WORDS and all(word == words[i % period] for i, word in enumerate(tail)):
            return " ".join(tokens[:period])
    return text
