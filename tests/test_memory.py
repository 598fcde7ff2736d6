"""Conversation memory: bounded, folded into a summary rather than dropped, saved per session (0600), forgotten
on request (a bus message for the session only, or the spoken "forget that" / "start over")."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from actors.llm import LlmActor
from actors.llm_backends import EchoGenerator
from actors.llm_commands import REPLIES, spoken_command
from actors.llm_memory import MAX_SUMMARY_WORDS, STOPWORDS, SUMMARY_HEAD, ConversationMemory
from actors.llm_prompt import SUMMARY_QUESTION, Conversation, words_of
from actors.llm_settings import LlmSettings
from bus.codec import encode, wire_topic
from bus.messages import LlmDone, LlmToken, NewConversation, Transcript
from bus.session_guard import refusal
from bus.sockets import BusAddress
from tests.helpers import AskedGenerator, OneOrMore, actor_on_bus, expect_exactly, of_type

TURN = 1_700_000_000_000
WAIT_S = 15.0


def key_words(question: str) -> set[str]:
    return {w for w in words_of(question) if w not in STOPWORDS and len(w) > 2}


def test_exchanges_beyond_the_budget_are_folded_into_a_summary_line() -> None:
    memory = ConversationMemory(budget_tokens=60)
    counter = EchoGenerator()
    questions = ["Where is planet Erid?", "How hot is the air there?", "What fuel does the Hail Mary use?",
                 "Why is Astrophage dangerous?", "Can you fix my bicycle chain?", "What colour is Tau Ceti?",
                 "How many crew were aboard?", "Who built the beetles?"]
    for i, question in enumerate(questions):
        memory.add("pi-1", question, f"Answer number {i} is short.", counter, turn=i)
    exchanges, tokens = memory.length("pi-1")
    assert 0 < exchanges < len(questions) and tokens <= 60
    assert memory.history("pi-1")[-1] == (questions[-1], "Answer number 7 is short.")
    folded = questions[:len(questions) - exchanges]
    summary = memory.summary("pi-1")
    assert summary.startswith(SUMMARY_HEAD) and counter.count_tokens(summary) <= 60 // 4
    words = set(summary.removeprefix(SUMMARY_HEAD).strip(" .").split(", "))
    assert words and words <= set().union(*map(key_words, folded)), "only the folded questions' key words"
    assert key_words(folded[-1]) & words, "the newest folded question is in it"
    assert memory.history("other") == [] and memory.summary("other") == ""
    told = Conversation("Next?", tuple(memory.history("pi-1")), summary=summary)
    assert told.messages()[-2 * exchanges - 3]["content"] == SUMMARY_QUESTION, "the summary heads the history"
    assert summary in told.transcript()


def test_the_summary_stays_one_short_line() -> None:
    memory = ConversationMemory(budget_tokens=384)
    for i in range(200):
        memory.add("s", f"tell me about topic{i} and subject{i}", "ok", EchoGenerator(), turn=i)
    first_kept = int(memory.history("s")[0][0].split("topic")[1].split()[0])
    words = memory.summary("s").removeprefix(SUMMARY_HEAD).split()
    assert len(words) == MAX_SUMMARY_WORDS and words[-1] == f"subject{first_kept - 1}."


def test_memory_is_saved_per_session_privately_and_read_back(tmp_path: Path) -> None:
    state = tmp_path / "memory"
    first = ConversationMemory(budget_tokens=200, state_dir=state)
    first.add("kitchen", "What is two plus two?", "Four.", EchoGenerator(), turn=1)
    first.add("../../etc/passwd", "Hi", "Hello.", EchoGenerator(), turn=2)
    files = sorted(state.iterdir())
    assert len(files) == 2 and all(f.parent == state and f.suffix == ".json" for f in files)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert not list(state.glob(".*.tmp")), "the temporary file was renamed into place"
    again = ConversationMemory(budget_tokens=200, state_dir=state)  # a restarted llm
    assert again.history("kitchen") == [("What is two plus two?", "Four.")]
    assert again.history("../../etc/passwd") == [("Hi", "Hello.")]
    again.forget("kitchen")
    assert ConversationMemory(budget_tokens=200, state_dir=state).history("kitchen") == []


def test_a_damaged_or_foreign_file_costs_the_memory_not_the_turn(tmp_path: Path) -> None:
    memory = ConversationMemory(budget_tokens=200, state_dir=tmp_path)
    memory.add("a", "Hi", "Hello.", EchoGenerator())
    path = memory.path_for("a")
    assert path is not None
    path.write_text("{not json")
    assert ConversationMemory(budget_tokens=200, state_dir=tmp_path).history("a") == []
    path.write_text(json.dumps({"session": "b", "exchanges": [[1, "x", "y"]]}))
    assert ConversationMemory(budget_tokens=200, state_dir=tmp_path).history("a") == []


def test_forget_that_drops_the_last_exchange_and_start_over_everything() -> None:
    memory = ConversationMemory(budget_tokens=40)
    for i in range(16):
        memory.add("s", f"question{i} here", "fine", EchoGenerator(), turn=i)
    kept = memory.history("s")
    memory.forget("s", "last")
    assert memory.history("s") == kept[:-1] and memory.summary("s")
    memory.forget("s", "all")
    assert memory.history("s") == [] and memory.summary("s") == "" and memory.length("s") == (0, 0)


@pytest.mark.parametrize(("said", "forget"), [
    ("Forget that.", "last"), ("Rocky, forget that please", "last"), ("Start over!", "all"),
    ("new conversation", "all"), ("OK rocky start over", "all"),
    ("How do I start over a stalled car?", None), ("Don't forget that eggs are food", None), ("", None),
])
def test_spoken_commands_are_only_the_command(said: str, forget: str | None) -> None:
    assert spoken_command(said) == forget


def test_a_spoken_start_over_is_answered_without_the_model(bus_address: BusAddress) -> None:
    generator = AskedGenerator()
    actor = LlmActor(LlmSettings(backend="echo", speculate=False, memory_dir=""), generator)
    with actor_on_bus(actor, bus_address, listen=["llm.done"]) as client:
        for turn, text in ((TURN, "Where is Erid?"), (TURN + 1, "How far is it?")):
            client.publish(Transcript(turn=turn, text=text, source="typed"))
            (done,) = of_type(expect_exactly(client, [LlmDone], WAIT_S), LlmDone)
            assert done.conversation_exchanges == turn - TURN + 1 and done.conversation_tokens > 0
        client.publish(Transcript(turn=TURN + 2, text="Start over.", source="speech"))
        (reset,) = of_type(expect_exactly(client, [LlmDone], WAIT_S), LlmDone)
        client.publish(Transcript(turn=TURN + 3, text="And now?", source="typed"))
        (after,) = of_type(expect_exactly(client, [LlmDone], WAIT_S), LlmDone)
    assert reset.text == REPLIES["all"] and reset.conversation_exchanges == 0 and reset.conversation_tokens == 0
    assert [c.user for c in generator.asked] == ["Where is Erid?", "How far is it?", "And now?"]
    assert generator.asked[-1].history == () and after.conversation_exchanges == 1


def test_forget_that_is_spoken_back_through_the_usual_tokens(bus_address: BusAddress) -> None:
    actor = LlmActor(LlmSettings(backend="echo", speculate=False, memory_dir=""), AskedGenerator())
    with actor_on_bus(actor, bus_address, listen=["llm."]) as client:
        client.publish(Transcript(turn=TURN, text="Where is Erid?", source="typed"))
        expect_exactly(client, [OneOrMore(LlmToken), LlmDone], WAIT_S)
        client.publish(Transcript(turn=TURN + 1, text="forget that", source="speech"))
        got = expect_exactly(client, [OneOrMore(LlmToken), LlmDone], WAIT_S)
    (done,) = of_type(got, LlmDone)
    assert "".join(t.text for t in of_type(got, LlmToken)) == done.text == REPLIES["last"]
    assert done.conversation_exchanges == 0 and actor.memory.history("local") == []


def test_a_new_conversation_message_clears_only_its_own_session(bus_address: BusAddress) -> None:
    generator = AskedGenerator()
    actor = LlmActor(LlmSettings(backend="echo", speculate=False, memory_dir=""), generator)
    with actor_on_bus(actor, bus_address, listen=["llm.done"]) as client:
        for session in ("kitchen", "hall"):
            client.publish(Transcript(session=session, turn=TURN, text="Hello", source="typed"))
            expect_exactly(client, [LlmDone], WAIT_S)
        client.publish(NewConversation(session="kitchen"))
        for session in ("kitchen", "hall"):  # same socket: the reset arrives before the question
            client.publish(Transcript(session=session, turn=TURN + 1, text="Again", source="typed"))
            expect_exactly(client, [LlmDone], WAIT_S)
    kitchen, hall = generator.asked[-2:]
    assert kitchen.history == () and hall.history == (("Hello", "You said: Hello"),)


def test_a_satellite_may_clear_only_its_own_conversation() -> None:
    theirs, mine = NewConversation(session="kitchen"), NewConversation(session="hall", forget="last")
    assert "not 'hall'" in refusal("hall", encode(theirs, topic=wire_topic(theirs)))
    assert refusal("hall", encode(mine, topic=wire_topic(mine))) == ""


def test_a_command_is_not_begun_on_the_model_before_the_release(bus_address: BusAddress) -> None:
    generator = AskedGenerator()
    actor = LlmActor(LlmSettings(backend="echo", speculate=True, memory_dir=""), generator)
    with actor_on_bus(actor, bus_address, listen=["llm.done"]) as client:
        client.publish(Transcript(turn=TURN, text="Start over", final=False, settled=True))
        client.publish(Transcript(turn=TURN, text="Start over."))
        (done,) = of_type(expect_exactly(client, [LlmDone], WAIT_S), LlmDone)
    assert done.text == REPLIES["all"] and generator.asked == []
