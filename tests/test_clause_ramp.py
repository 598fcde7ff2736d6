"""After an early first clause, each clause may be cut after twice the words of the one before, until
punctuation ends one: a short first clause must not leave a silence while a long second one is made."""

from __future__ import annotations

from actors.persona_text import ClauseSplitter


def clauses_of(text: str, first_clause_words: int) -> list[str]:
    splitter = ClauseSplitter(first_clause_words=first_clause_words)
    out = [c for word in text.split(" ") for c in splitter.feed(word + " ")]
    return out + splitter.flush()


def test_clauses_after_an_early_cut_double_until_punctuation() -> None:
    text = ("There are one hundred and forty two hours from now until the end of the week on this planet. "
            "Then the engineers of the ship rest for a long time after all that work is done")
    got = clauses_of(text, 2)
    # 2 words, 4, then 8 or a little more: a cut never ends on a word that leads on ("of", "the")
    assert got[:3] == ["There are", "one hundred and forty", "two hours from now until the end of the week"]
    assert got[3] == "on this planet."  # the ramp runs on to the full stop (16 words allowed) ...
    assert got[4] == "Then the engineers of the ship rest for a long time after all that work is done"  # ... then ends
    assert " ".join(got) == text


def test_punctuation_before_the_word_count_ends_the_ramp() -> None:
    got = clauses_of("Jupiter. It is the biggest planet in our solar system by far and away", 2)
    assert got == ["Jupiter.", "It is the biggest planet in our solar system by far and away"]


def test_the_same_clauses_whatever_the_pieces() -> None:
    text = "Spiders have eight legs and most of them have eight eyes as well, friend"
    splitter = ClauseSplitter(first_clause_words=2)
    whole = splitter.feed(text) + splitter.flush()
    assert whole == clauses_of(text, 2)
