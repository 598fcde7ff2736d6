"""One CPU budget for the heavy actors: how many threads each backend may start, and no spinning pools.

The actors share a small machine. Left alone, llama.cpp, CTranslate2 (Whisper) and onnxruntime (Piper)
each size their thread pools to the whole machine and spin-wait between operations, so on 2 cores they
starve each other and anything else that runs. The plan below gives every backend an explicit count from
the cores this process may use (`ROCKY_RELAY_CORES` overrides the count, e.g. for a big server; a
backend's own `threads` setting overrides its share), and asks every pool to sleep, not spin, when idle.

The stages of one turn mostly run one after another (STT, then the LLM, whose tokens TTS speaks as they
come), so STT and the LLM may each use every core, and TTS gets one thread. llama.cpp's threads meet at a
spinning barrier after every operation, so one of them losing its core stalls them all: with one busy
loop in another session (the kernel's autogroups give each session a fair share whatever its nice value)
a 2-thread Qwen reply fell from 9 to 0.3 tokens/s, while one thread kept 4.7. So the LLM asks, before
each prompt and each token, how many threads of other processes are runnable (`others_running`) and
uses only the cores left (`cores_free`), never fewer than one. The first clause's TTS running beside the
LLM counts too, which is the order of priority wanted: the clause being spoken is not starved.
"""

from __future__ import annotations

import os
from pathlib import Path

CORES_ENV = "ROCKY_RELAY_CORES"


def cores() -> int:
    """Cores this process may run on (its affinity mask), or `ROCKY_RELAY_CORES` when set."""
    override = os.environ.get(CORES_ENV, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise ValueError(f"{CORES_ENV}={override!r}: give a whole number of cores, at least 1")
        return int(override)
    return max(1, len(os.sched_getaffinity(0)))


def plan(n: int) -> dict[str, int]:
    """Threads per backend for `n` cores: stt (Whisper), llm_prefill (prompt evaluation), llm (token
    generation), tts (Piper)."""
    return {"stt": n, "llm_prefill": n, "llm": n, "tts": 1}


def threads_for(role: str, setting: int = 0) -> int:
    """A backend's thread count: its own setting when above 0, else its share of the plan."""
    if setting < 0:
        raise ValueError(f"{role} threads {setting}: give 0 (from the CPU plan) or a positive count")
    return setting or plan(cores())[role]


def quiet_thread_pools() -> None:
    """Ask OpenMP runtimes (CTranslate2's) to sleep when idle instead of spinning for 200 ms after each
    parallel region; must run before the library is imported. A user's own setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("KMP_BLOCKTIME", "0")


def _procs_running() -> int:
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"procs_running"):
                return int(line.split()[1])
    return 0


def _own_running() -> int:
    running = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            # state is the field after the parenthesised name, which may itself hold spaces
            running += (task / "stat").read_bytes().rpartition(b")")[2].split()[0] == b"R"
        except (OSError, IndexError):
            continue  # the thread ended while we looked
    return running


def others_running(samples: int = 3) -> int:
    """Runnable threads of other processes now: the fewest over a few samples, so a blip is not a load.
    0 where /proc cannot tell (not Linux)."""
    try:
        return max(0, min(_procs_running() - _own_running() for _ in range(samples)))
    except OSError:
        return 0


def free_cores() -> int:
    """Cores that other runnable threads leave to this process now; at least one."""
    return max(1, cores() - others_running())


def cores_free(wanted: int) -> int:
    """`wanted` threads, fewer when other runnable threads hold cores; at least one."""
    return min(wanted, free_cores())
