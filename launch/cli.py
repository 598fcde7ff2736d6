"""The `rocky-relay` command: its parser, and the smaller subcommands (tap, launch, bench).

`talk`, `say` and `serve` live in their own modules (launch/talk_cmd.py, say_cmd.py, serve_cmd.py); they
use a set that already serves the bus, found by launch/attach.py, and start one only when none runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bus.endpoints import AddressInUse
from bus.privacy import PRIVATE_UMASK
from bus.security import BusSecurityError
from launch.bench_table import BENCH_MODELS
from launch.config import Config, ConfigError, actor_set, bus_address
from launch.logsetup import configure_logging


def _config(args: argparse.Namespace, extra: Sequence[str] = (), secure: bool = True) -> Config:
    from launch.attach import load_command_config

    return load_command_config(args, extra, secure)


def cmd_tap(args: argparse.Namespace) -> int:
    from bus.tap import tap
    from launch.attach import surely_free

    config = _config(args)
    if surely_free(bus_address(config)):
        print(f"rocky-relay tap: no set runs at {bus_address(config).sub_addr} yet: its traffic shows once one "
              "starts (`rocky-relay serve`)", file=sys.stderr)
    return tap(bus_address(config), args.prefix, count=args.count, as_json=args.json, timeout_s=args.timeout,
               show_all=args.all, session=args.session)


def cmd_launch(args: argparse.Namespace) -> int:
    """`serve` under its older name (the Pi's unit and scripts use it)."""
    from launch.serve_cmd import serve

    if args.check:  # at install time the keys may not be there yet: the actors must build all the same
        return _check_set(_config(args, secure=False), args.set_name)
    return serve(_config(args), args.set_name, "launch")


def _check_set(config: Config, set_name: str) -> int:
    """Build every actor of the set as its process would, starting none: what an install must prove."""
    from launch.actor_main import build_actor
    from launch.config import expand_replicas

    names = expand_replicas(config, actor_set(config, set_name))
    for name in names:
        if name == "proxy":
            continue
        try:
            build_actor(name, config)
        except Exception as exc:
            print(f"rocky-relay launch --check: {name} cannot be built here: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 2
    print(f"actor set {set_name!r}: {', '.join(names)} import and configure", file=sys.stderr)
    return 0


BENCH_SUITES = {"tools": "launch.bench_tools", "voices": "launch.bench_voices", "doors": "launch.bench_doors"}
"""`bench --suite NAME`: a module with `run(args) -> int` measuring one area (tool calls, voices, the Wyoming
and browser front doors) beside its baseline in the same run; the default suite is the answer set above."""


def cmd_bench(args: argparse.Namespace) -> int:
    from launch.bench import main as bench_main

    if args.suite != "answers":
        import importlib

        return int(importlib.import_module(BENCH_SUITES[args.suite]).run(args))

    pipelines = ["streaming", "sequential"] if args.pipeline == "both" else [args.pipeline]
    models = list(BENCH_MODELS) if args.model == "all" else [args.model]
    return bench_main(args.reps, models, pipelines, quick=args.quick, append=not args.no_append)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rocky-relay", description="Push-to-talk voice assistant on a ZeroMQ bus.")
    parser.add_argument("--config", help="TOML config (default: ./rocky-relay.toml if present)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set llm.max_tokens=32 (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    tap_p = sub.add_parser("tap", help="watch bus traffic (audio summarised)")
    tap_p.add_argument("prefix", nargs="?", default="", help="topic prefix, e.g. stt or ctl.")
    tap_p.add_argument("--count", type=int, default=0, help="exit after this many messages")
    tap_p.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds")
    tap_p.add_argument("--json", action="store_true", help="one JSON object per message")
    tap_p.add_argument("--all", action="store_true", help="also heartbeats and mic frames (hidden by default)")
    tap_p.add_argument("--session", default="", help="only this session's messages (a satellite id)")
    tap_p.set_defaults(func=cmd_tap)

    launch = sub.add_parser("launch", help="run an actor set until Ctrl-C (the same as serve)")
    launch.add_argument("set_name", metavar="SET", help="local, server, pi, typed or one from the config")
    launch.add_argument("--check", action="store_true",
                        help="only import and configure every actor of the set, start nothing (install check)")
    launch.set_defaults(func=cmd_launch)
    bench = sub.add_parser("bench", help="measure turns through the launched actors; appends to BENCHMARK.md")
    bench.add_argument("--reps", type=int, default=8,
                       help="questions asked in the shorter scenarios (default 8; the answer set is asked whole)")
    bench.add_argument("--model", choices=["all", *BENCH_MODELS], default="all",
                       help="all (default): the default model, the tiny one, and the tiny one with tiny.en "
                            "(the fastest set), in the same run; the other suites take the default for all")
    bench.add_argument("--pipeline", choices=["both", "streaming", "sequential"], default="both",
                       help="both (default) measures streaming and the sequential flow in the same run")
    bench.add_argument("--quick", action="store_true", help="only the first 6 questions (a smoke run)")
    bench.add_argument("--no-append", action="store_true", help="do not append to BENCHMARK.md")
    bench.add_argument("--suite", choices=["answers", *BENCH_SUITES], default="answers",
                       help="answers (default): the answer set, releases, busy machine; or one area's turns")
    bench.set_defaults(func=cmd_bench)
    # Subcommands that live in their own modules; each adds its parser.
    from launch import (
        config_doc,
        doctor,
        keys_cmd,
        models_cmd,
        report,
        say_cmd,
        serve_cmd,
        soak,
        talk_cmd,
        voices_cmd,
        web_cmd,
    )

    talk_cmd.register(sub)
    say_cmd.register(sub)
    serve_cmd.register(sub)
    keys_cmd.register(sub)
    config_doc.register(sub)
    report.register(sub)
    soak.register(sub)
    models_cmd.register(sub)
    doctor.register(sub)
    web_cmd.register(sub)
    voices_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)  # logs, records, replies and the actors' files: the user's alone
    args = build_parser().parse_args(argv)
    configure_logging(json_output=False)
    try:
        return int(args.func(args))
    except (ConfigError, TimeoutError, BusSecurityError, AddressInUse) as exc:
        print(f"rocky-relay {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
