"""A new conversation from the command line: `say --new`, and the n key of `talk`; each turn says how long the
conversation it remembers is."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from actors.llm import LlmActor
from actors.llm_backends import EchoGenerator
from actors.llm_settings import LlmSettings
from bus.messages import LlmDone, Transcript
from bus.sockets import BusAddress
from launch.live_talk import LiveTalk, Screen
from launch.talk_cmd import EXTRA_KEYS
from tests.helpers import actor_on_bus, expect_exactly, of_type, run_cli

TURN = 1_700_000_000_000


def test_say_remembers_across_runs_and_new_starts_over(set_dir: Path) -> None:
    sets = [f"bus.pub=ipc://{set_dir}/pub", f"bus.sub=ipc://{set_dir}/sub", "llm.backend=echo",
            "tts.backend=tone", "player.backend=wav", f"player.path={set_dir}/r-{{turn}}.wav",
            f"logger.path={set_dir}/turns.jsonl", f"llm.memory_dir={set_dir}/memory"]
    options = [f"--set={s}" for s in sets]
    outputs = []
    for extra, text in (([], "Where is Erid?"), ([], "How far is it?"), (["--new"], "Hello again")):
        code, out = run_cli(*options, "say", *extra, text)
        assert code == 0, out
        outputs.append(out)
    assert "conversation: 1 exchange remembered" in outputs[0]
    assert "conversation: 2 exchanges remembered" in outputs[1], "a later `say` carries the conversation on"
    assert "conversation: 1 exchange remembered" in outputs[2], "--new forgot the two before"


def test_the_n_key_of_talk_starts_a_new_conversation(bus_address: BusAddress) -> None:
    actor = LlmActor(LlmSettings(backend="echo", speculate=False, memory_dir=""), EchoGenerator())
    out = io.StringIO()
    with actor_on_bus(actor, bus_address, listen=["llm.done"]) as client:
        talk = SimpleNamespace(driver=SimpleNamespace(client=client, session="local"), screen=Screen(out))
        lengths = []
        for turn, key in ((TURN, ""), (TURN + 1, ""), (TURN + 2, "n")):
            if key:
                EXTRA_KEYS[key][1](talk)  # type: ignore[arg-type]  # the key needs only .driver and .screen
            client.publish(Transcript(turn=turn, text="Where is Erid?", source="typed"))
            (done,) = of_type(expect_exactly(client, [LlmDone], 15.0), LlmDone)
            lengths.append(done.conversation_exchanges)
    assert lengths == [1, 2, 1] and "new conversation" in out.getvalue()
    prompt = LiveTalk(talk.driver, SimpleNamespace(single_keys=True), Screen(io.StringIO()),  # type: ignore[arg-type]
                      extra_keys=EXTRA_KEYS).prompt("ready")
    assert "n: new conversation" in prompt
