"""The `rocky` prompt style (chat roles kept as structure, examples already in Rocky's voice) and the
`rocky_llm` persona, which only tidies what the LLM said in that style."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.llm_prompt import FACT_EXAMPLE, SPOKEN_RULES, STYLES, Conversation
from actors.persona import PersonaActor, PersonaSettings
from actors.persona_text import rocky_tidy, rocky_transform
from bus.messages import LlmDone, LlmToken, Say
from bus.sockets import BusAddress
from tests.helpers import Sendable, of_type, run_actor
from tests.test_persona_text import SAMPLES

TURN = 1_700_000_000_000


def test_chat_messages_keep_roles_as_structure() -> None:
    conversation = Conversation("Where is\nErid?", (("Hi\nthere", "Hello, friend."),), "rocky")
    persona, examples = STYLES["rocky"]
    turns = [m for u, r in (*examples, FACT_EXAMPLE, ("Hi there", "Hello, friend."))
             for m in (("user", u), ("assistant", r))]
    assert [(m["role"], m["content"]) for m in conversation.messages()] == [
        ("system", f"{persona} {SPOKEN_RULES}"), *turns, ("user", "Where is Erid?")]


def test_rocky_style_examples_are_already_rocky() -> None:
    assert STYLES["rocky"][0] != STYLES["plain"][0]
    for _, reply in STYLES["rocky"][1]:
        assert rocky_tidy(reply) == reply == rocky_transform(reply)


@pytest.mark.parametrize("text", SAMPLES)
def test_rocky_tidy_leaves_rocky_text_alone_and_is_stable(text: str) -> None:
    rocky = rocky_transform(text)
    assert rocky_tidy(rocky) == rocky
    assert rocky_tidy(rocky_tidy(text)) == rocky_tidy(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["the", "a", "The", "yes", "good", "thanks", "VERY", "I'm", "can't", "Erid", "and",
                                 "but", ",", "!", "?", ".", "question?", "ship"]), max_size=30))
def test_rocky_tidy_is_stable_and_a_no_op_on_settled_rocky_text(words: list[str]) -> None:
    text = " ".join(words)
    rocky = rocky_transform(rocky_transform(text))  # rocky_transform settles after two passes
    assert rocky_tidy(rocky) == rocky
    assert rocky_tidy(rocky_tidy(text)) == rocky_tidy(text)


def test_rocky_tidy_fixes_grammar_without_adding_flourishes() -> None:
    assert rocky_tidy("Yes, that's great! The ship is fixed?") == "Yes, that is great! Ship is fixed, question?"


def test_persona_rocky_llm_tidies_clauses(bus_address: BusAddress) -> None:
    pieces = ["I", " am", " Rocky", " the", " engineer", ".", " Where", " is", " the", " ship", "?"]
    send: list[Sendable] = [LlmToken(turn=TURN, text=p, index=i) for i, p in enumerate(pieces)]
    send.append(LlmDone(turn=TURN, text="".join(pieces), tokens=len(pieces)))
    got = run_actor(PersonaActor(PersonaSettings(style="rocky_llm", first_clause_words=5)), bus_address, send,
                    expect=[Say, Say], listen=["say"])
    assert [s.text for s in of_type(got, Say)] == ["I am Rocky engineer.", "Where is ship, question?"]

