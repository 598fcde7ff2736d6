"""A Whisper decoder loop is cut to one copy (actors/stt_repeats.py); speech that repeats itself is kept."""

from __future__ import annotations

import pytest

from actors.stt_repeats import without_repeats


@pytest.mark.parametrize(("heard", "said"), [
    ("What is 2 plus 2? What is 2 plus 2?", "What is 2 plus 2?"),  # from the bench, 2026-12-02
    ("How many hours are in a day? How many hours are in", "How many hours are in a day?"),
    ("What do bees make? What do bees make? What do bees", "What do bees make?"),
    ("what is ten minus three what is ten minus three", "what is ten minus three"),
])
def test_a_loop_is_kept_once(heard: str, said: str) -> None:
    assert without_repeats(heard) == said


@pytest.mark.parametrize("speech", [
    "no no", "bye bye bye", "What is 2 plus 2? What is 3 plus 3?", "How many hours are in a day? How many",
    "New York, New York", "", "yes",
])
def test_speech_that_repeats_a_little_is_left_alone(speech: str) -> None:
    assert without_repeats(speech) == speech
