"""A short soak in the suite: 60 spoken turns with the fast backends through the launched actor set.

`rocky-relay soak` holds RSS growth to 5 % over 200 turns; here the bound is 10 %: in a ~42 MiB actor,
allocator warm-up (pymalloc arenas, libzmq's and msgpack's buffers reaching their working size) is a
step of 1-2 MiB that shows fully in 60 turns and is amortised in 200. Leaks of fds, threads and
processes have no warm-up: those must not grow at all, and every turn must leave exactly one record.
"""

from __future__ import annotations

import json
from pathlib import Path

from launch.config import load_config
from launch.soak import ActorSample, SoakResult, format_table, run_soak, write_json

SHORT_RSS_LIMIT_PCT = 10.0


def test_sixty_fast_turns_leak_nothing(tmp_path: Path) -> None:
    result = run_soak(60, "fast", warmup=10, rss_limit_pct=SHORT_RSS_LIMIT_PCT, progress=False)
    print(format_table(result))
    actors = set(load_config().sets["local"])
    assert set(result.start) == set(result.end) == actors
    driven = result.warmup + 60  # the warm-up lasts until the echo LLM's memory is full (~70 turns)
    assert result.statuses == {"ok": driven}, result.failures
    assert result.records_found == driven and not result.records_bad
    for name, first in result.start.items():
        last = result.end[name]
        assert last.pid == first.pid, f"{name} was replaced"
        assert last.fds <= first.fds and last.threads <= first.threads and last.children <= first.children, (
            name, first, last)
    assert all(growth <= SHORT_RSS_LIMIT_PCT for growth in result.growth().values()), result.growth()
    assert result.restarts == dict.fromkeys(actors, 0)
    assert result.left_running == []
    assert result.problems() == []
    saved = json.loads(write_json(result, tmp_path).read_text())
    assert saved["problems"] == [] and len(saved["per_turn"]) == driven and saved["start"]["proxy"]["rss"] > 0


def test_the_verdict_names_every_kind_of_leak() -> None:
    """The checks above are only as good as `problems()`: it must see each leak it is meant to."""
    steady = ActorSample(pid=1, rss=100 * 2**20, fds=12, threads=4, children=0)
    result = SoakResult(backends="fast", warmup=1, turns=2, rss_limit_pct=5.0, start={"llm": steady},
                        end={"llm": ActorSample(pid=1, rss=106 * 2**20, fds=13, threads=5, children=1)},
                        records_found=2, restarts={"llm": 1}, left_running=[4242], failures=["turn 7: error"])
    problems = " | ".join(result.problems())
    for expected in ("RSS +6.0 %", "fds 12 -> 13", "threads 4 -> 5", "child processes 0 -> 1", "restarted 1",
                     "1 turns failed", "records: 2 of 3", "pids [4242]"):
        assert expected in problems, (expected, problems)
    clean = SoakResult(backends="fast", warmup=1, turns=2, rss_limit_pct=5.0, start={"llm": steady},
                       end={"llm": steady}, records_found=3, restarts={"llm": 0})
    assert clean.problems() == [] and "PASS" in format_table(clean)
