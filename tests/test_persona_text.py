"""Tests for actors.persona_text: Rocky-speak rules and the streaming clause splitter."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.persona_text import ClauseSplitter, plain_transform, rocky_transform

REPLY = "Hello friend! I am Rocky, engineer from Erid. Space is very big, question?"
REPLY_CLAUSES = ["Hello friend!", "I am Rocky, engineer from Erid.", "Space is very big, question?"]


def norm(text: str) -> str:
    return " ".join(text.split())


def split_into(text: str, sizes: list[int]) -> list[str]:
    """Cut text into pieces whose lengths cycle through sizes."""
    pieces, i, k = [], 0, 0
    while i < len(text):
        pieces.append(text[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return pieces


def run_stream(pieces: list[str], **kwargs: int) -> list[str]:
    splitter = ClauseSplitter(**kwargs)
    out: list[str] = []
    for piece in pieces:
        out += splitter.feed(piece)
    return out + splitter.flush()


# --- rocky_transform -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The ship is big.", "Ship is big."),
        ("I have a plan and an idea.", "I have plan and idea."),
        ("Fix THE engine.", "Fix engine."),
        ("An apple.", "Apple."),
        ("the", "the"),  # never empty
        ("A", "A"),
        ("I want the", "I want the"),  # "the" with nothing after is not an article here
    ],
)
def test_drop_articles(text: str, expected: str) -> None:
    assert rocky_transform(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Where are you going?", "Where are you going, question?"),
        ("Where are you going, question?", "Where are you going, question?"),
        ("You eat??", "You eat, question?"),
        ("Yes?", "Yes, question?"),
        ("?", "Question?"),
    ],
)
def test_question_tag(text: str, expected: str) -> None:
    assert rocky_transform(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("That is amazing!", "That is amazing amazing amazing!"),
        ("Fist my bump very!", "Fist my bump very very very!"),
        ("Wow!", "Wow wow wow!"),
        ("Amaze amaze amaze!", "Amaze amaze amaze!"),  # already repeated
        ("This is VERY big.", "This is VERY VERY VERY big."),
        ("It is BIG!", "It is BIG BIG BIG!"),  # caps and "!" together triple once
        ("It is 4:38 PM on Wednesday (UTC).", "It is 4:38 PM on Wednesday (UTC)."),  # units, not shouts
        ("OK.", "OK."),  # a sentence with no lower case is not emphasis
        ("Stop! Go now.", "Stop stop stop! Go now."),
    ],
)
def test_emphasis(text: str, expected: str) -> None:
    assert rocky_transform(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm here.", "I am here."),
        ("you're late, it's fine.", "you are late, it is fine."),
        ("Don't go, I can't, I won't.", "Do not go, I cannot, I will not."),
        ("It isn't far, that's sure, let's fly.", "It is not far, that is sure, let us fly."),
        ("I\u2019m sure it\u2019s Erid.", "I am sure it is Erid."),  # typographic apostrophes
        ("That's it.", "That is it."),
        ("Let's fly.", "Let us fly."),
    ],
)
def test_contractions(text: str, expected: str) -> None:
    assert rocky_transform(text) == expected


def test_long_sentence_split_at_and_but() -> None:
    text = "I fixed my engine on our ship today, and now we can fly home to Erid very fast, but fuel is low."
    assert rocky_transform(text) == (
        "I fixed my engine on our ship today. And now we can fly home to Erid very fast. But fuel is low."
    )


def test_short_sentence_not_split() -> None:
    assert rocky_transform("I am tired, and I sleep.") == "I am tired, and I sleep."


def test_long_sentence_without_conjunction_kept_whole() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen."
    assert rocky_transform(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "Yes yes."),
        ("yeah", "Yes yes."),
        ("Yes, the ship is ready.", "Yes yes. Ship is ready."),
        ("That is good.", "That is good good."),
        ("That is great!", "That is good good!"),
        ("Good!", "Good good!"),
        ("Is it good?", "Is it good, question?"),  # questions keep their words
        ("Good plan, friend.", "Good plan, friend."),  # only at the end; friend stays
        ("Thank you.", "Thank, thank."),
        ("Thanks!", "Thank, thank!"),
        ("Thanks for your help.", "Thank, thank for your help."),
    ],
)
def test_word_swaps(text: str, expected: str) -> None:
    assert rocky_transform(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_input(text: str) -> None:
    assert rocky_transform(text) == ""
    assert plain_transform(text) == ""


def test_whitespace_normalised() -> None:
    assert rocky_transform("  Erid   is\n far.  ") == "Erid is far."
    assert plain_transform("  The ship,\n  question?  ") == "The ship, question?"


SAMPLES = [
    REPLY,
    "Where are you going?",
    "That is amazing!",
    "Yes, that's great!",
    "Thank you, friend!",
    "This is VERY VERY important.",
    "I'm sure the Astrophage can't eat the xenonite, and it won't eat the fuel either, but we must test it.",
    "Yeah. The ship is good. Is it good?",
    "Hmm... I do not know!",
    "Dr. Grace, a 3.5 meter pipe is too long!",
    "the",
    "!!",
    "?",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_rocky_transform_is_stable(text: str) -> None:
    once = rocky_transform(text)
    assert once
    assert rocky_transform(once) == once
    assert rocky_transform(rocky_transform(once)) == once


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["the", "a", "yes", "good", "great", "thanks", "VERY", "I'm", "Erid", "friend", "and", ",", "!", "?", "."]
        ),
        max_size=25,
    )
)
def test_rocky_transform_does_not_grow_on_reapply(words: list[str]) -> None:
    text = " ".join(words)
    once = rocky_transform(text)
    assert len(rocky_transform(once)) <= len(once) + len(", question?")
    assert rocky_transform(rocky_transform(once)) == rocky_transform(once)


# --- ClauseSplitter --------------------------------------------------------------------


def test_whole_reply_then_flush() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed(REPLY) == REPLY_CLAUSES[:2]
    assert splitter.flush() == REPLY_CLAUSES[2:]


@pytest.mark.parametrize("sizes", [[1], [2], [3], [4], [1, 4, 2, 3], [3, 1, 1, 4], [4, 3, 2, 1]])
def test_token_by_token_matches_whole(sizes: list[int]) -> None:
    assert run_stream(split_into(REPLY, sizes)) == REPLY_CLAUSES


def test_first_clause_emitted_before_stream_ends() -> None:
    pieces = split_into(REPLY, [1, 3, 2])
    splitter = ClauseSplitter()
    first_at = next(i for i, piece in enumerate(pieces) if splitter.feed(piece))
    # "Hello friend!" goes out as soon as the space after "!" arrives.
    assert "".join(pieces[: first_at + 1]).startswith("Hello friend! ")
    assert first_at < len(pieces) // 4


def test_first_clause_short_but_later_short_clauses_merge() -> None:
    splitter = ClauseSplitter(min_chars=12)
    assert splitter.feed("Hi. ") == ["Hi."]
    assert splitter.feed("Ok. Then we go. ") == ["Ok. Then we go."]


def test_first_clause_needs_two_words_at_a_comma() -> None:
    assert ClauseSplitter().feed("Well, ") == []
    # A comma cut also waits for the next word, which could be Rocky's "question?" tag.
    assert ClauseSplitter().feed("Oh yes, ") == []
    assert ClauseSplitter().feed("Oh yes, so") == ["Oh yes,"]


def test_punctuation_waits_for_whitespace() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("It is ready.") == []
    assert splitter.feed(" Go") == ["It is ready."]
    assert splitter.flush() == ["Go"]


def test_numbers_and_abbreviations_not_cut() -> None:
    text = "Dr. Grace says the pipe is 3.5 meters, e.g. too long for Mr. Rocky. Fix it."
    assert run_stream(split_into(text, [2])) == [
        "Dr. Grace says the pipe is 3.5 meters,",
        "e.g. too long for Mr. Rocky.",
        "Fix it.",
    ]


def test_comma_and_dash_cut_only_when_long_enough() -> None:
    splitter = ClauseSplitter(min_chars=12)
    assert splitter.feed("Yes I know. ") == ["Yes I know."]
    assert splitter.feed("So, we - ") == []
    assert splitter.feed("fly to Erid - now go. ") == ["So, we - fly to Erid -"]
    assert splitter.flush() == ["now go."]  # too short to go out alone; waited for more


def test_question_tag_stays_with_its_clause() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("Hi. You like space, quest") == ["Hi."]
    assert splitter.feed("ion? Yes") == ["You like space, question?"]
    assert splitter.flush() == ["Yes"]


def test_long_unpunctuated_text_cut_at_space() -> None:
    words = [f"word{i}" for i in range(60)]
    text = " ".join(words)
    clauses = run_stream(split_into(text, [3, 1, 4]), max_chars=50)
    assert len(clauses) > 1
    assert all(len(c) <= 50 for c in clauses)
    assert " ".join(clauses) == text  # cuts fall between words


def test_overlong_word_is_cut_hard() -> None:
    assert run_stream(["x" * 25], max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_newline_ends_a_clause() -> None:
    assert run_stream(["Steps to fix\nopen the panel\n"]) == ["Steps to fix", "open the panel"]


def test_flush_returns_rest_and_resets() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("Hello there friend") == []
    assert splitter.flush() == ["Hello there friend"]
    assert splitter.flush() == []
    assert splitter.feed("Hi. ") == ["Hi."]  # a fresh stream: first-clause rule again


def test_reset_discards_pending_text() -> None:
    splitter = ClauseSplitter()
    splitter.feed("Half a sent")
    splitter.reset()
    assert splitter.feed("New one. ") == ["New one."]


@pytest.mark.parametrize("pieces", [[], [""], ["", "  ", "\n"]])
def test_empty_input_gives_nothing(pieces: list[str]) -> None:
    assert run_stream(pieces) == []


def test_invalid_limits_rejected() -> None:
    with pytest.raises(ValueError):
        ClauseSplitter(max_chars=0)


_WORD = st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True)
_PUNCT = st.sampled_from(["", "", ".", ",", "!", "?", ";", ":", " -", "...", "?!", '."'])
_TOKEN = st.one_of(
    st.tuples(_WORD, _PUNCT).map("".join),
    st.sampled_from(["3.5", "Dr.", "e.g.", "question?", "-", '"']),
)


@st.composite
def text_and_cuts(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A text of words and punctuation, and the positions where the stream is cut."""
    tokens = draw(st.lists(_TOKEN, max_size=60))
    seps = draw(st.lists(st.sampled_from([" ", " ", "  ", "\n", " \n "]), min_size=len(tokens), max_size=len(tokens)))
    text = "".join(t + s for t, s in zip(tokens, seps, strict=True))
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=30))
    return text, sorted(set(cuts))


@settings(max_examples=300, deadline=None)
@given(text_and_cuts(), st.integers(0, 30), st.integers(30, 200))
def test_split_loses_and_duplicates_nothing(case: tuple[str, list[int]], min_chars: int, max_chars: int) -> None:
    text, cuts = case
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    clauses = run_stream(pieces, min_chars=min_chars, max_chars=max_chars)
    assert norm(" ".join(clauses)) == norm(text)
    assert all(c and c == c.strip() and len(c) <= max_chars for c in clauses)
    assert clauses == run_stream([text], min_chars=min_chars, max_chars=max_chars)
    assert not any(re.fullmatch(r"\s*", c) for c in clauses)


def test_first_clause_is_cut_after_enough_words_without_punctuation() -> None:
    splitter = ClauseSplitter(first_clause_words=4)
    out: list[str] = []
    for piece in ["Erid", " is", " the", " biggest", " planet", " in", " our", " solar", " system", "."]:
        out += splitter.feed(piece)
    out += splitter.flush()
    assert out == ["Erid is the biggest", "planet in our solar system."]
    plain = ClauseSplitter()
    assert plain.feed("Erid is the biggest planet in our solar system") == []


def test_an_early_first_clause_never_ends_on_a_word_that_leads_on() -> None:
    splitter = ClauseSplitter(first_clause_words=3)
    pieces = ["Jupiter", " is", " the", " biggest", " planet", " in", " our", " solar", " system", "."]
    clauses = [c for p in pieces for c in splitter.feed(p)] + splitter.flush()
    assert clauses == ["Jupiter is the biggest", "planet in our solar system."]
    assert rocky_transform(clauses[0]) == "Jupiter is biggest"
