"""No orphans: a child process that dies with the thread that started it (Linux PR_SET_PDEATHSIG).

The launcher's actors, the edge measurement's children and the network-namespace tests' hosts all use it,
so a parent killed with -9 leaves nothing running. The death signal is tied to the *thread* that forked
the child, not the process: fork from a thread that lives as long as the children should.
"""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

try:  # loaded here, before any fork: between fork and exec the child only calls into it
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: callers still stop their children themselves
    _prctl = None


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` when the forking thread exits."""

    def set_death_signal() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, int(sig))

    return set_death_signal
