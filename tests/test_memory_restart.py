"""The conversation outlives the llm process: a real typed set, its llm killed -9 and restarted by the
supervisor, remembers the session's exchanges from its 0600 file (echo model: no weights needed)."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from bus.handshake import wait_for_actors
from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

FAST = ["llm.backend=echo", "tts.backend=tone", "player.backend=wav"]


def test_the_conversation_outlives_an_llm_restart(set_dir: Path) -> None:
    memory = set_dir / "memory"
    config = load_config(None, [*FAST, f"bus.pub=ipc://{set_dir}/pub", f"bus.sub=ipc://{set_dir}/sub",
                                f"player.path={set_dir}/r-{{turn}}.wav", f"logger.path={set_dir}/turns.jsonl",
                                f"llm.memory_dir={memory}"])
    with Supervisor(config, config.sets["typed"], log_dir=set_dir / "actors") as supervisor:
        supervisor.start(timeout_s=60)
        driver = TurnDriver(bus_address(config))
        try:
            before = [driver.typed_turn(q)["conversation_exchanges"] for q in ("Where is Erid?", "How far?")]
            killed = supervisor.pid("llm")
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            ready = wait_for_actors(driver.client, {"llm"}, timeout_s=60, pids=supervisor.pid)
            assert ready["llm"].pid != killed
            after = driver.typed_turn("And its sun?")
        finally:
            driver.close()
    assert before == [1, 2] and after["status"] == "ok" and after["conversation_exchanges"] == 3
    assert after["conversation_tokens"] > 0
    (saved,) = memory.iterdir()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and "Where is Erid?" in saved.read_text()
