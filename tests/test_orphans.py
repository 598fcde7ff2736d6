"""`die_with_parent`: a child started with it gets its signal when the thread that started it ends."""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest

from launch.orphans import die_with_parent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_child_dies_with_the_thread_that_started_it(sig: signal.Signals) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def parent() -> None:  # forks the child, then ends: that is the child's parent going away
        started.append(subprocess.Popen(["sleep", "600"], preexec_fn=die_with_parent(sig)))

    thread = threading.Thread(target=parent)
    thread.start()
    thread.join(10)
    child = started[0]
    try:
        assert child.wait(timeout=10) == -sig
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
