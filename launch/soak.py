"""`rocky-relay soak`: many consecutive spoken turns through a launched actor set; a leak fails it.

The set runs on an ipc:// bus in a temp folder, the mic reads launch/samples/prompt-1s.wav (not paced),
the player writes WAVs. After a warm-up (at least `--warmup` turns, and on until the conversation memory is
full: with real models the LLM touches more KV-cache pages while its prompt grows, bounded by
llm.history_tokens, which is not a leak) every actor process is sampled (RSS, open fds, threads, child
processes), then `--turns` more turns run and it is sampled again. It passes when no actor's RSS grew
more than `--rss-limit` %, no fd, thread or process count grew, no actor was restarted, nothing is left
running after the stop, and the logger's JSONL holds exactly one complete record per turn. Raw samples
go to logs/soak/<timestamp>-<backends>.json.

    .venv/bin/python -m launch.soak --turns 200 --backends fast
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from launch.config import bus_address, load_config
from launch.supervisor import Supervisor
from launch.turns import TurnDriver

PROMPT = Path(__file__).resolve().parent / "samples" / "prompt-1s.wav"
FAST = ("stt.backend=fixed", "llm.backend=echo", "tts.backend=tone")
"""Backends that need no model: every stage still runs in its own process and crosses the bus."""
RSS_LIMIT_PCT = 5.0
SETTLED_TURNS = 5
"""Warm-up lasts until the prompt has not grown for this many turns (the conversation memory is full)."""
WARMUP_MAX = 150
PER_TURN = ("turn", "status", "llm_prompt_tokens", "llm_tokens", "release_to_first_audio_ms")
MIB = 1024 * 1024


@dataclass(frozen=True)
class ActorSample:
    pid: int
    rss: int
    fds: int
    threads: int
    children: int


@dataclass
class SoakResult:
    backends: str
    warmup: int
    """Turns before the first sample: the minimum asked for, then on until the prompt stopped growing."""
    turns: int
    rss_limit_pct: float
    start: dict[str, ActorSample] = field(default_factory=dict)
    end: dict[str, ActorSample] = field(default_factory=dict)
    trend: list[dict[str, Any]] = field(default_factory=list)
    """RSS of every actor every few turns: a trend tells a leak from noise."""
    statuses: dict[str, int] = field(default_factory=dict)
    per_turn: list[dict[str, Any]] = field(default_factory=list)
    """A few figures of every turn, to line a growth up with what the turns did (prompt size...)."""
    failures: list[str] = field(default_factory=list)
    records_found: int = 0
    records_bad: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    left_running: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """Every limit that was broken, in words; empty means PASS."""
        found = [f"{n}: RSS +{pct:.1f} % > {self.rss_limit_pct:g} %" for n, pct in self.growth().items()
                 if pct > self.rss_limit_pct]
        for name, first in self.start.items():
            last = self.end.get(name)
            if last is None:
                found.append(f"{name}: not sampled at the end")
                continue
            found += [f"{name}: {what} {a} -> {b}" for what, a, b in (
                ("fds", first.fds, last.fds), ("threads", first.threads, last.threads),
                ("child processes", first.children, last.children)) if b > a]
        found += [f"{n} restarted {k} times" for n, k in self.restarts.items() if k]
        found += [f"{len(self.failures)} turns failed"] if self.failures else []
        expected = self.warmup + self.turns
        if self.records_found != expected or self.records_bad:
            found.append(f"records: {self.records_found} of {expected}, {len(self.records_bad)} bad")
        found += [f"still running after the stop: pids {self.left_running}"] if self.left_running else []
        return found

    def growth(self) -> dict[str, float]:
        return {n: 100.0 * (self.end[n].rss - s.rss) / s.rss for n, s in self.start.items() if n in self.end}


def overrides(backends: str, folder: Path) -> list[str]:
    """The soak's own settings, applied over the user's config: bus, mic, player and logger in `folder`."""
    if backends not in ("fast", "real"):
        raise ValueError(f"--backends {backends!r}: use fast or real")
    return [f"bus.pub=ipc://{folder}/pub", f"bus.sub=ipc://{folder}/sub", "security.keys_dir=", "security.name=",
            "mic.backend=wav", f"mic.path={PROMPT}", "mic.realtime=false", "player.backend=wav",
            f"player.path={folder}/reply.wav", f"logger.path={folder}/turns.jsonl",
            *(FAST if backends == "fast" else ())]


class SoakError(RuntimeError):
    """The soak cannot run here (its tools are missing)."""


def _psutil() -> Any:
    """psutil, a server-only dependency: imported when a soak runs, so an edge install's CLI still starts."""
    try:
        import psutil
    except ImportError as exc:
        raise SoakError("rocky-relay soak needs psutil: pip install 'rocky-relay[server]'") from exc
    return psutil


def sample(pid: int) -> ActorSample:
    proc = _psutil().Process(pid)
    with proc.oneshot():
        return ActorSample(pid=pid, rss=proc.memory_info().rss, fds=proc.num_fds(), threads=proc.num_threads(),
                           children=len(proc.children(recursive=True)))


def sample_set(supervisor: Supervisor) -> dict[str, ActorSample]:
    found: dict[str, ActorSample] = {}
    for name in supervisor.children:
        pid = supervisor.pid(name)
        if pid is not None:
            with contextlib.suppress(_psutil().Error):  # died meanwhile: it shows as a restart
                found[name] = sample(pid)
    return found


def check_records(path: Path, turns: list[int], result: SoakResult) -> None:
    """One complete JSON record per driven turn, none twice, none torn."""
    seen: Counter[int] = Counter()
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            seen[int(record["turn"])] += 1
            if not isinstance(record["status"], str):
                raise TypeError("status is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            result.records_bad.append(f"line {number}: {exc}")
    result.records_found = sum(1 for t in turns if seen[t] == 1)
    result.records_bad += [f"turn {t}: {seen[t]} records" for t in turns if seen[t] > 1]
    result.records_bad += [f"turn {t}: a record of no driven turn" for t in seen if t not in set(turns)]


def _turn(driver: TurnDriver, result: SoakResult, driven: list[int]) -> dict[str, Any]:
    record = driver.spoken_turn(max_speech_s=30, timeout_s=120)
    driven.append(int(record["turn"]))
    result.per_turn.append({k: record.get(k) for k in PER_TURN})
    result.statuses[record["status"]] = result.statuses.get(record["status"], 0) + 1
    if record["status"] != "ok":
        result.failures.append(f"turn {record['turn']}: {record['status']} {record.get('error')}")
    return record


def _drive(driver: TurnDriver, supervisor: Supervisor, result: SoakResult, driven: list[int],
           progress: bool) -> None:
    """Warm up, sample, run the measured turns, sample again."""
    longest, since_longest = -1, 0
    while len(driven) < WARMUP_MAX and not (len(driven) >= result.warmup and since_longest >= SETTLED_TURNS):
        # The LLM's memory grows each turn until its token budget is full, and its process touches more
        # KV-cache pages with each longer prompt: bounded growth that is not a leak. Measure after it.
        prompt = _turn(driver, result, driven).get("llm_prompt_tokens") or 0
        longest, since_longest = (prompt, 0) if prompt > longest else (longest, since_longest + 1)
    result.warmup = len(driven)
    result.start = sample_set(supervisor)
    every = max(1, result.turns // 20)
    for i in range(result.turns):
        if i % every == 0:
            result.trend.append({"turn": i, "rss": {n: s.rss for n, s in sample_set(supervisor).items()}})
        _turn(driver, result, driven)
        if progress and (i + 1) % 10 == 0:
            print(f"  {i + 1}/{result.turns} turns after {result.warmup} warm-up turns", file=sys.stderr, flush=True)
    result.end = sample_set(supervisor)
    result.trend.append({"turn": result.turns, "rss": {n: s.rss for n, s in result.end.items()}})


def run_soak(turns: int, backends: str = "fast", warmup: int = 10, rss_limit_pct: float = RSS_LIMIT_PCT,
             config_path: str | None = None, user_overrides: list[str] | None = None,
             progress: bool = True) -> SoakResult:
    result = SoakResult(backends=backends, warmup=warmup, turns=turns, rss_limit_pct=rss_limit_pct)
    began = time.monotonic()
    psutil = _psutil()
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with tempfile.TemporaryDirectory(prefix="rr-soak-") as tmp:
        folder = Path(tmp)
        config = load_config(config_path, [*(user_overrides or []), *overrides(backends, folder)])
        supervisor = Supervisor(config, config.sets["local"], log_dir=folder / "actors")
        driven: list[int] = []
        try:
            supervisor.start(timeout_s=300)
            driver = TurnDriver(bus_address(config))
            try:
                _drive(driver, supervisor, result, driven, progress)
            finally:
                driver.close()
        finally:
            supervisor.stop()
            result.restarts = {name: supervisor.restarts(name) for name in supervisor.children}
        check_records(folder / "turns.jsonl", driven, result)
    # The supervisor has reaped every actor; anything of ours still alive now was leaked.
    result.left_running = sorted(p.pid for p in me.children(recursive=True)
                                 if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE)
    result.seconds = time.monotonic() - began
    return result


def format_table(result: SoakResult) -> str:
    lines = [f"soak: {result.turns} turns ({result.backends} backends) after {result.warmup} warm-up turns, "
             f"{result.seconds:.0f} s, {os.cpu_count()} cores",
             f"{'actor':8s} {'RSS start -> end MiB':>22s} {'growth':>8s} {'fds':>10s} {'threads':>10s} "
             f"{'children':>9s}"]
    growth = result.growth()
    for name, first in result.start.items():
        last = result.end.get(name)
        if last is None:
            lines.append(f"{name:8s} (not sampled at the end)")
            continue
        lines.append(f"{name:8s} {first.rss / MIB:10.1f} -> {last.rss / MIB:7.1f} {growth[name]:+7.1f}% "
                     f"{first.fds:4d} -> {last.fds:<3d} {first.threads:4d} -> {last.threads:<3d} "
                     f"{first.children:3d} -> {last.children:<3d}")
    ok = result.statuses.get("ok", 0)
    lines.append(f"turns: {ok} ok, {result.warmup + result.turns - ok} failed "
                 f"(statuses: {dict(result.statuses)}); records found: {result.records_found}/"
                 f"{result.warmup + result.turns}, bad: {len(result.records_bad)}")
    lines.append(f"restarts: {sum(result.restarts.values())}; processes left after stop: {len(result.left_running)}")
    problems = result.problems()
    lines.append(f"PASS (RSS growth <= {result.rss_limit_pct:g} % per actor after warm-up, no fd/thread/process "
                 "growth, every record present)" if not problems else "FAIL: " + "; ".join(problems))
    return "\n".join(lines)


def write_json(result: SoakResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{result.backends}.json"
    data = asdict(result)
    data["growth_pct"] = result.growth()
    data["problems"] = result.problems()
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=_at_least_one, default=200,
                        help="turns measured after the warm-up (default 200)")
    parser.add_argument("--backends", choices=["fast", "real"], default="fast",
                        help="fast: fixed STT, echo LLM, tone TTS; real: the embedded models")
    parser.add_argument("--warmup", type=_at_least_one, default=10,
                        help="at least this many turns before the first sample, and on until the conversation "
                             f"memory is full (the prompt stopped growing for {SETTLED_TURNS} turns); default 10")
    parser.add_argument("--rss-limit", type=float, default=RSS_LIMIT_PCT, metavar="PCT",
                        help=f"largest RSS growth per actor, percent (default {RSS_LIMIT_PCT:g})")
    parser.add_argument("--out-dir", default="logs/soak", help="where the raw samples go (default logs/soak)")


def cmd_soak(args: argparse.Namespace) -> int:
    try:
        result = run_soak(args.turns, args.backends, args.warmup, args.rss_limit,
                          config_path=getattr(args, "config", None), user_overrides=list(getattr(args, "set", [])))
    except SoakError as exc:
        print(f"rocky-relay soak: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(f"raw samples: {write_json(result, Path(args.out_dir))}")
    return 0 if not result.problems() else 1


def _at_least_one(text: str) -> int:
    """A turn count: a soak of no turns would pass without having measured anything."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("soak", help="many consecutive turns; fails on memory, fd, thread or process leaks")
    add_arguments(parser)
    parser.set_defaults(func=cmd_soak)


def main(argv: list[str] | None = None) -> int:
    from launch.logsetup import configure_logging

    parser = argparse.ArgumentParser(prog="python -m launch.soak", description=__doc__.splitlines()[0])
    add_arguments(parser)
    configure_logging(json_output=False)
    return cmd_soak(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
