"""How the LLM counts the cores other work takes (actors/cpu.py): a thread the kernel outweighs ours
against does not count, one that gets a fair share does; and the launcher's priority claim.

The scheduling checks run in a child started in a new session: it then has an autogroup of its own at nice 0,
whatever earlier tests (a launched set asks for `server.priority`) did to pytest's session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from actors.cpu import PRIORITY_UNSET, claim_priority, weight
from launch.config import ConfigError, load_config

PROBE = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from pathlib import Path
    from actors.cpu import _ours, claim_priority, outweighed

    LOOP = "while True: pass"

    def runnable(pid):  # the loop is up and on a run queue (a fresh process may first sleep in exec)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0] == b"R":
                return True
            time.sleep(0.01)
        return False

    same = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", LOOP])
    other = subprocess.Popen([sys.executable, "-c", LOOP], start_new_session=True)
    try:
        assert runnable(same.pid) and runnable(other.pid), "the busy loops never ran"
        seen = {"group": _ours()[0],
                "same_session_nice19": outweighed(str(same.pid), 19),
                "other_session_before": outweighed(str(other.pid), 0)}
        seen["claim"] = claim_priority(-10)
        seen["other_session_after"] = outweighed(str(other.pid), 0)
        print(json.dumps(seen))
    finally:
        for proc in (same, other):
            proc.kill()
            proc.wait(timeout=10)
""")


def probe() -> dict[str, object]:
    """Run `PROBE` in a new session and return what it saw."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          start_new_session=True, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="this kernel has no autogroups")
def test_background_loops_count_as_the_kernel_weighs_them() -> None:
    seen = probe()
    if seen["group"] is None:
        pytest.skip("autogroup scheduling is off (kernel.sched_autogroup_enabled = 0)")
    assert seen["same_session_nice19"] is True, "a nice 19 loop in our session gets a sliver: keep our threads"
    assert seen["other_session_before"] is False, "another session's loop gets a fair share: it takes a core"
    claim = str(seen["claim"])
    if claim.startswith("priority -10 set"):  # root, or CAP_SYS_NICE
        assert seen["other_session_after"] is True, "once we asked for priority, that loop is outweighed"
    else:
        assert "needs CAP_SYS_NICE" in claim, claim
        assert seen["other_session_after"] is False


def test_priority_zero_asks_nothing_and_the_setting_is_range_checked() -> None:
    assert claim_priority(0) == PRIORITY_UNSET
    assert load_config(None, ["server.priority=-5"]).server.priority == -5
    with pytest.raises(ConfigError, match=r"server\.priority"):
        load_config(None, ["server.priority=-30"])


def test_weights_follow_the_kernel_table() -> None:
    assert weight(0) == 1024
    assert round(weight(-10)) in range(9500, 9600)  # sched_prio_to_weight: 9548
    assert round(weight(19)) in range(14, 16)  # 15
