"""Words for the report's internal names: 'turns · rocky+piper · speech' reads 'Spoken question, Rocky persona,
Piper voice'; 'streaming · qwen2.5-1.5b · busy-piper+0.2' reads 'Streaming: Spoken question beside a busy loop (Piper
voice, released 0.2 s after the last word), Qwen2.5 1.5B model'.

A name no table knows is shown as it is, so a new variant is never hidden, only less pretty.
"""

from __future__ import annotations

import re

PIPELINES = {"streaming": "Streaming", "sequential": "Sequential (whole stages in a row)",
             "in-process": "Three models in one process", "turns": ""}
PERSONAS = {"rocky": "Rocky persona", "rocky_llm": "Rocky-speaking LLM", "none": "no persona", "plain": "no persona"}
VOICES = {"piper": "Piper voice", "espeak": "espeak-ng voice", "espeak-ng": "espeak-ng voice",
          "http": "voice server", "hibari": "Hibari voice", "tone": "test tone", "silent": "silence"}
MODELS = {"qwen2.5-1.5b": "Qwen2.5 1.5B model", "qwen2.5-0.5b": "Qwen2.5 0.5B model",
          "gemma-3-270m": "Gemma 3 270M model", "tiny": "Gemma 3 270M model", "echo": "echo (test) model"}
SOURCES = {"speech": "Spoken question", "typed": "Typed question", "typed-cold": "Typed question, first after start",
           "barge-in": "Barge-in (interrupted while speaking)", "timer": "Timer ringing (nobody asked)",
           "unknown": "Unknown source", "?": "Unknown source"}
QUESTION_CHARS = 42
"""A question longer than this is cut (with an ellipsis) where it names a waterfall row."""

_SCENARIO = re.compile(r"^(?P<kind>spoken|busy-same-session|busy)-(?P<voice>[a-z0-9_-]+?)\+(?P<after>[0-9.]+)$")
_KINDS = {"spoken": "Spoken question", "busy": "Spoken question beside a busy loop",
          "busy-same-session": "Spoken question beside a busy loop in the launcher's session"}


def variant_words(variant: str) -> str:
    """'rocky+piper' -> 'Rocky persona, Piper voice'; a model name -> its name in words."""
    if variant in MODELS:
        return MODELS[variant]
    persona, plus, voice = variant.partition("+")
    if plus:
        return f"{PERSONAS.get(persona, persona)}, {VOICES.get(voice, voice)}"
    return PERSONAS.get(variant) or VOICES.get(variant) or variant


def scenario_words(scenario: str) -> str:
    """'spoken-piper+0.2' -> 'Spoken question (Piper voice, released 0.2 s after the last word)'."""
    if scenario in SOURCES:
        return SOURCES[scenario]
    match = _SCENARIO.match(scenario)
    if match is None:
        return scenario
    voice = VOICES.get(match["voice"], match["voice"])
    return f"{_KINDS[match['kind']]} ({voice}, released {match['after']} s after the last word)"


def group_words(pipeline: str, variant: str, scenario: str) -> str:
    """A benchmark or turn group as a person would say it."""
    words = f"{scenario_words(scenario)}, {variant_words(variant)}"
    pipeline_words = PIPELINES.get(pipeline, pipeline)
    return f"{pipeline_words}: {words}" if pipeline_words else words


def question_words(text: object, limit: int = QUESTION_CHARS) -> str:
    """The question that names a waterfall row, on one line, cut at a word to `limit` characters."""
    said = " ".join(str(text).split()) if isinstance(text, str) else ""
    if not said:
        return "(no words heard)"
    if len(said) <= limit:
        return said
    cut = said[:limit - 1].rsplit(" ", 1)[0] if " " in said[:limit - 1] else said[:limit - 1]
    return f"{cut}…"
