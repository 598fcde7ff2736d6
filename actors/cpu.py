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
LLM counts too, which is the order of priority wanted: the clause being spoken is not starved. A thread
the kernel outweighs ours against (a nice 19 loop in our own session; another session's, once ours has
asked for priority) does not count: it gets a sliver of a core, not a core.

The launcher asks for that priority (`claim_priority`, `server.priority`): the nice of its session's
autogroup, which the kernel weighs against every other session's. Lowering it takes CAP_SYS_NICE or an
RLIMIT_NICE allowance; without, the set runs at a fair share beside a busy session, on one LLM thread.
"""

from __future__ import annotations

import os
import time
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


def _state_and_nice(stat: Path) -> tuple[bytes, int]:
    """A thread's state letter and nice value, from its `stat` (the fields after the parenthesised name,
    which may itself hold spaces: state is the first, nice the 17th)."""
    fields = stat.read_bytes().rpartition(b")")[2].split()
    return fields[0], int(fields[16])


def _own_running() -> int:
    running = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            running += _state_and_nice(task / "stat")[0] == b"R"
        except (OSError, IndexError, ValueError):
            continue  # the thread ended while we looked
    return running


def weight(nice: int) -> float:
    """The kernel's scheduling weight for a nice value (1024 at 0, ~1.25x per step, as sched_prio_to_weight)."""
    return 1024 / 1.25 ** max(-20, min(19, nice))


OUTWEIGHED = 1 / 3
"""A runnable thread whose scheduling weight is below this fraction of ours gets a sliver of a core beside
one of our threads (a nice 19 loop in our own session: 1.5 %; another session's loop when ours asked for
priority 10 steps up: 11 %), so llama.cpp keeps its threads for it: a short stall at a barrier now and then
costs far less than running on one thread fewer."""


def _autogroup(pid: str) -> tuple[str, int] | None:
    """(name, nice) of a process's autogroup (`/autogroup-N nice K`); None where it cannot be read."""
    try:
        name, _, nice = Path(f"/proc/{pid}/autogroup").read_text().split()
        return name, int(nice)
    except (OSError, ValueError):
        return None


Ours = tuple[tuple[str, int] | None, int]
"""This process's autogroup (None where autogroups are off or unreadable) and its own nice."""


def _ours() -> Ours:
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        enabled = False
    return (_autogroup("self") if enabled else None), os.getpriority(os.PRIO_PROCESS, 0)


def outweighed(pid: str, thread_nice: int, ours: Ours | None = None) -> bool:
    """Whether a runnable thread (of process `pid`, at `thread_nice`) is outweighed by this process's threads
    (see `OUTWEIGHED`): one of our own autogroup (session) by its nice against ours; one of another autogroup
    by that group's nice against our group's, whatever its own nice (that is how the kernel shares the CPU
    between sessions). cgroup CPU weights (systemd slices) are not read: there a thread competes by its nice.
    `ours`: `_ours()`, read once by a caller that asks about many threads."""
    group, own_nice = ours or _ours()
    theirs = _autogroup(pid) if group is not None else None
    if group is None or theirs is None or group[0] == theirs[0]:
        ratio = weight(thread_nice) / weight(own_nice)
    else:
        ratio = weight(theirs[1]) / weight(group[1])
    return ratio < OUTWEIGHED


def _competing_threads() -> int:
    """Runnable threads of other processes that are not outweighed by ours."""
    me, ours, competing = str(os.getpid()), _ours(), 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == me:
            continue
        try:
            tasks = list((proc / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                state, nice = _state_and_nice(task / "stat")
            except (OSError, IndexError, ValueError):
                continue  # the thread ended while we looked
            competing += state == b"R" and not outweighed(proc.name, nice, ours)
    return competing


_last_scan: list[float] = [0.0, 0.0, 0.0]
"""When `_competing_threads` last ran, the cheap count then, and what it found: the scan reads every thread's
stat (~3 ms for 70 processes, more on a desktop), too much before every token, so it is reused while the
cheap count has not grown (a loop that keeps running) for up to `RESCAN_S`."""
RESCAN_S = 1.0


def others_running(samples: int = 3) -> int:
    """Runnable threads of other processes now that take a core from us: the fewest over a few samples, so a
    blip is not a load, and only those not outweighed by us (`_competing_threads`, looked at only when the
    cheap count sees any). 0 where /proc cannot tell (not Linux)."""
    try:
        runnable = max(0, min(_procs_running() - _own_running() for _ in range(samples)))
        if not runnable:
            return 0
        at, seen, competing = _last_scan
        if runnable > seen or time.monotonic() - at > RESCAN_S:
            at, seen, competing = time.monotonic(), runnable, _competing_threads()
            _last_scan[:] = [at, seen, competing]
        return int(min(runnable, competing))
    except OSError:
        return 0


def free_cores() -> int:
    """Cores that other runnable threads leave to this process now; at least one."""
    return max(1, cores() - others_running())


def cores_free(wanted: int) -> int:
    """`wanted` threads, fewer when other runnable threads hold cores; at least one."""
    return min(wanted, free_cores())


PRIORITY_UNSET = "priority 0: not asked"


def claim_priority(nice: int) -> str:
    """Ask the kernel to weigh this session's autogroup (every actor the launcher starts shares it) at `nice`,
    so that background work in other sessions yields to a turn; what happened, in words. Lowering it below 0
    needs CAP_SYS_NICE or an RLIMIT_NICE allowance (root, or the unit's `AmbientCapabilities=CAP_SYS_NICE`,
    or `limits.conf`'s `nice`); without it the set runs at the fair share, and says why."""
    if nice == 0:
        return PRIORITY_UNSET
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except FileNotFoundError:
        return f"priority {nice} not set: this kernel has no autogroups (/proc/self/autogroup)"
    except OSError as exc:
        why = "needs CAP_SYS_NICE or an RLIMIT_NICE allowance" if exc.errno in (1, 13) else str(exc)
        return f"priority {nice} not set: {why}; the set runs at a fair share beside other sessions"
    group = _autogroup("self")
    return f"priority {nice} set on {group[0]}" if group else f"priority {nice} set"
