"""The report's labels are words a person reads, not the bench's internal names."""

from __future__ import annotations

import pytest

from launch.report_data import GroupStats
from launch.report_labels import question_words


@pytest.mark.parametrize(("group", "words"), [
    (("turns", "rocky+piper", "speech"), "Spoken question, Rocky persona, Piper voice"),
    (("turns", "none+espeak", "typed"), "Typed question, no persona, espeak-ng voice"),
    (("streaming", "qwen2.5-1.5b", "busy-piper+0.2"),
     "Streaming: Spoken question beside a busy loop (Piper voice, released 0.2 s after the last word), "
     "Qwen2.5 1.5B model"),
    (("sequential", "gemma-3-270m", "spoken-espeak+0.5"), "Sequential (whole stages in a row): "
     "Spoken question (espeak-ng voice, released 0.5 s after the last word), Gemma 3 270M model"),
    (("in-process", "qwen2.5-1.5b", "typed-cold"),
     "Three models in one process: Typed question, first after start, Qwen2.5 1.5B model"),
    (("future-pipe", "mystery", "odd-scenario"), "future-pipe: odd-scenario, mystery"),  # shown, not hidden
])
def test_groups_are_labelled_in_words(group: tuple[str, str, str], words: str) -> None:
    stats = GroupStats(*group, n=0, p50=None, p95=None, stage_p50={})
    assert stats.label == words
    assert "·" not in stats.label and "+" not in stats.label.removeprefix("future-pipe")


def test_a_long_question_is_cut_at_a_word_and_a_missing_one_said_so() -> None:
    assert question_words("What is   the\nweather like?") == "What is the weather like?"
    cut = question_words("Tell me everything you know about the Astrophage and the Hail Mary's engines")
    assert cut == "Tell me everything you know about the…" and len(cut) <= 42
    assert question_words("") == question_words(None) == "(no words heard)"


def test_a_timer_turn_is_named_so() -> None:
    assert GroupStats("turns", "rocky+piper", "timer", n=0, p50=None, p95=None, stage_p50={}).label == \
        "Timer ringing (nobody asked), Rocky persona, Piper voice"
