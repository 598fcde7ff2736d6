"""The `rocky-relay` command: talk, say, tap, launch.

`talk` and `say` start the actor set they need (or `--attach` to one that a
`rocky-relay launch` already runs), drive turns over the bus and print the
transcript, the reply and the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bus.endpoints import AddressInUse
from bus.privacy import PRIVATE_UMASK
from bus.security import BusSecurityError
from launch.bench_table import BENCH_MODELS
from launch.config import Config, ConfigError, actor_set, bus_address, load_config
from launch.logsetup import configure_logging

DEFAULT_CONFIG = Path("rocky-relay.toml")


def _config(args: argparse.Namespace, extra: Sequence[str] = (), secure: bool = True) -> Config:
    from bus.privacy import remember_config
    from bus.security import require_security
    from launch.keys_cmd import bind_session_to_key

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    config = load_config(path, [*extra, *args.set])
    remember_config(config.to_dict())  # from here on, its credentials are masked in whatever is printed
    if secure:
        address = bus_address(config)
        require_security(address)  # a LAN bus without keys: say so before spawning anything
        bind_session_to_key(config, address.curve)
    return config


@contextmanager
def _running(config: Config, set_name: str, attach: bool, drop: tuple[str, ...] = ()) -> Iterator[None]:
    """The actor set up and ready for the duration of the block (nothing started with --attach)."""
    if attach:
        yield
        return
    from launch.supervisor import Supervisor

    names = [n for n in actor_set(config, set_name) if n not in drop]
    supervisor = Supervisor(config, names)
    print(f"starting {', '.join(names)} ...", file=sys.stderr)
    try:
        readies = supervisor.start()
        for name, ready in sorted(readies.items()):
            print(f"  {name:8s} ready  {ready.backend}", file=sys.stderr)
        yield
    finally:
        supervisor.stop()


def cmd_talk(args: argparse.Namespace) -> int:
    from launch.turns import TurnDriver, print_event, record_wait_s

    overrides: list[str] = []
    if args.attach and (args.input or args.output):
        return _attach_refused("talk", "--input" if args.input else "--output")
    if args.input:
        from audio.wav import WavError, load_pcm16_mono

        try:
            load_pcm16_mono(args.input)  # refuse a bad file before starting anything
        except WavError as exc:
            print(f"rocky-relay talk: {exc}", file=sys.stderr)
            return 2
        overrides += ["mic.backend=wav", f"mic.path={Path(args.input).resolve()}"]
    if args.output:
        overrides += ["player.backend=wav", f"player.path={Path(args.output).resolve()}"]
    config = _config(args, overrides)
    with _running(config, args.actors, args.attach):
        driver = TurnDriver(bus_address(config), session=args.session,
                            link_timeout_s=config.satellite.link_timeout_s,
                            source="script" if args.input else "keyboard", wait_s=record_wait_s(config))
        try:
            if args.input:
                record = driver.spoken_turn(on_event=print_event)
                _print_record(record, args.json)
                return 0 if record["status"] == "ok" else 1
            return _keyboard_talk(driver, bus_address(config))
        finally:
            driver.close()


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    from launch.turns import format_record

    print(format_record(record))
    if as_json:
        print(json.dumps(record))
    if record.get("not_saved"):
        print(f"rocky-relay: warning: this turn's record is not saved yet: {record['not_saved']}", file=sys.stderr)


def _keyboard_talk(driver: Any, address: Any) -> int:
    """Enter talks, Enter again sends; pressing while Rocky speaks interrupts him (barge-in)."""
    from bus.messages import TurnRecord
    from bus.sockets import BusClient
    from launch.keyboard import keyboard_loop
    from launch.turns import print_event

    done = threading.Event()

    def printer() -> None:  # its own socket: the main thread's belongs to the button
        client = BusClient(address, ("stt.final", "llm.done", "turn."), name="talk-printer")
        try:
            while not done.is_set():
                env = client.recv(timeout_ms=200)
                if env is None or env.msg.session != driver.session:  # other satellites' turns are theirs
                    continue
                print_event(env)
                if isinstance(env.msg, TurnRecord):
                    _print_record(env.msg.record, as_json=False)
                    if env.msg.turn == driver.button.turn:
                        driver.button.turn_open = False
        finally:
            client.close()

    thread = threading.Thread(target=printer, name="talk-printer", daemon=True)
    thread.start()
    try:
        keyboard_loop(driver.button, lambda turn: None)
    finally:
        done.set()
        thread.join(timeout=2)
    return 0


def _attach_refused(command: str, option: str) -> int:
    """--input/--output choose the mic/player of the set a command starts; an attached set has its own."""
    actor, what = ("mic", "listens") if option == "--input" else ("player", "plays")
    print(f"rocky-relay {command}: {option} would be ignored with --attach (the running set's {actor} {what}, "
          f"not this file): drop --attach to start a set that uses it, or launch the set with "
          f"--set {actor}.backend=wav --set {actor}.path=FILE", file=sys.stderr)
    return 2


def cmd_say(args: argparse.Namespace) -> int:
    from bus.codec import CodecError, encode
    from bus.messages import Transcript
    from launch.turns import TurnDriver, print_event, record_wait_s

    if args.attach and args.output:
        return _attach_refused("say", "--output")
    text = " ".join(args.text)
    try:
        encode(Transcript(session=args.session, text=text, source="typed"))  # it must fit on the bus
    except CodecError:
        print(f"rocky-relay say: the text is too long ({len(text.encode('utf-8'))} bytes) to travel on the bus; "
              "say it in a few sentences", file=sys.stderr)
        return 2
    overrides = ["player.backend=wav", f"player.path={Path(args.output).resolve()}"] if args.output else []
    config = _config(args, overrides)
    with _running(config, "typed", args.attach):
        driver = TurnDriver(bus_address(config), session=args.session,
                            link_timeout_s=config.satellite.link_timeout_s, source="typed",
                            wait_s=record_wait_s(config))
        try:
            record = driver.typed_turn(text, on_event=print_event)
        finally:
            driver.close()
    _print_record(record, args.json)
    return 0 if record["status"] == "ok" else 1


def cmd_tap(args: argparse.Namespace) -> int:
    from bus.tap import tap

    config = _config(args)
    return tap(bus_address(config), args.prefix, count=args.count, as_json=args.json, timeout_s=args.timeout,
               show_all=args.all, session=args.session)


def cmd_launch(args: argparse.Namespace) -> int:
    if args.check:  # at install time the keys may not be there yet: the actors must build all the same
        return _check_set(_config(args, secure=False), args.set_name)
    config = _config(args)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with _running(config, args.set_name, attach=False):
        print(f"actor set {args.set_name!r} ready on {config.bus.sub}; Ctrl-C stops it", file=sys.stderr)
        done.wait()
    return 0


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
    models = list(BENCH_MODELS) if args.model == "both" else [args.model]
    return bench_main(args.reps, models, pipelines, quick=args.quick, append=not args.no_append)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rocky-relay", description="Push-to-talk voice assistant on a ZeroMQ bus.")
    parser.add_argument("--config", help="TOML config (default: ./rocky-relay.toml if present)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set llm.max_tokens=32 (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    talk = sub.add_parser("talk", help="push-to-talk turns (Enter to talk), or one turn from a WAV")
    talk.add_argument("--input", help="a WAV to use as the spoken question (one turn, no microphone)")
    talk.add_argument("--output", help="write the spoken reply to this WAV instead of the speaker")
    talk.add_argument("--actors", default="local", help="actor set to start (default: local)")
    talk.add_argument("--attach", action="store_true", help="use an already launched actor set")
    talk.add_argument("--session", default="local", help="satellite/session id")
    talk.add_argument("--json", action="store_true", help="also print the turn record as JSON")
    talk.set_defaults(func=cmd_talk)

    say = sub.add_parser("say", help="a typed turn through the bus: LLM, persona, TTS, player")
    say.add_argument("text", nargs="+")
    say.add_argument("--output", help="write the spoken reply to this WAV instead of the speaker")
    say.add_argument("--attach", action="store_true", help="use an already launched actor set")
    say.add_argument("--session", default="local")
    say.add_argument("--json", action="store_true", help="also print the turn record as JSON")
    say.set_defaults(func=cmd_say)

    tap_p = sub.add_parser("tap", help="watch bus traffic (audio summarised)")
    tap_p.add_argument("prefix", nargs="?", default="", help="topic prefix, e.g. stt or ctl.")
    tap_p.add_argument("--count", type=int, default=0, help="exit after this many messages")
    tap_p.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds")
    tap_p.add_argument("--json", action="store_true", help="one JSON object per message")
    tap_p.add_argument("--all", action="store_true", help="also heartbeats and mic frames (hidden by default)")
    tap_p.add_argument("--session", default="", help="only this session's messages (a satellite id)")
    tap_p.set_defaults(func=cmd_tap)

    launch = sub.add_parser("launch", help="run an actor set until Ctrl-C")
    launch.add_argument("set_name", metavar="SET", help="local, server, pi, typed or one from the config")
    launch.add_argument("--check", action="store_true",
                        help="only import and configure every actor of the set, start nothing (install check)")
    launch.set_defaults(func=cmd_launch)
    bench = sub.add_parser("bench", help="measure turns through the launched actors; appends to BENCHMARK.md")
    bench.add_argument("--reps", type=int, default=8,
                       help="questions asked in the shorter scenarios (default 8; the answer set is asked whole)")
    bench.add_argument("--model", choices=["both", *BENCH_MODELS], default="both",
                       help="both (default): the default model and the tiny one in the same run")
    bench.add_argument("--pipeline", choices=["both", "streaming", "sequential"], default="both",
                       help="both (default) measures streaming and the sequential flow in the same run")
    bench.add_argument("--quick", action="store_true", help="only the first 6 questions (a smoke run)")
    bench.add_argument("--no-append", action="store_true", help="do not append to BENCHMARK.md")
    bench.add_argument("--suite", choices=["answers", *BENCH_SUITES], default="answers",
                       help="answers (default): the answer set, releases, busy machine; or one area's turns")
    bench.set_defaults(func=cmd_bench)
    # Subcommands that live in their own modules; each adds its parser.
    from launch import config_doc, doctor, keys_cmd, models_cmd, report, soak

    keys_cmd.register(sub)
    config_doc.register(sub)
    report.register(sub)
    soak.register(sub)
    models_cmd.register(sub)
    doctor.register(sub)
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
