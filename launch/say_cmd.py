"""`rocky-relay say TEXT`: one typed turn (LLM, persona, TTS, player) through the set that runs.

A set already serving the bus (`rocky-relay serve`) is found and used; only when none runs is the `typed`
set started for this one turn, and it says so. What `say` prints is this turn's alone (other clients' with
`--all-sessions`), and a failure is one error line: the record's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.codec import Envelope
from bus.messages import TurnError
from launch.attach import RunningSet
from launch.config import bus_address

Printer = Callable[[Envelope], None]


def register(sub: Any) -> None:
    say = sub.add_parser("say", help="a typed turn through the bus: LLM, persona, TTS, player")
    say.add_argument("text", nargs="+")
    say.add_argument("--output", help="write the spoken reply to this WAV instead of the speaker")
    say.add_argument("--new", action="store_true",
                     help="start a new conversation: Rocky forgets this session's earlier exchanges first")
    add_set_options(say, "say")
    # More options of a typed turn go here (and into the Transcript cmd_say publishes).
    say.set_defaults(func=cmd_say)


def add_set_options(parser: argparse.ArgumentParser, command: str) -> None:
    """The options `talk` and `say` share: which set, which session, what to show."""
    parser.add_argument("--attach", action="store_true",
                        help="only use a running set: an error when none runs (by default a running set is used, "
                             "and one is started for this command only when none runs)")
    parser.add_argument("--session", default="local", help="satellite/session id")
    parser.add_argument("--json", action="store_true", help="also print the turn record as JSON")
    parser.add_argument("--all-sessions", action="store_true",
                        help=f"also show other clients' turns while {command} runs (by default only its own)")


def cmd_say(args: argparse.Namespace) -> int:
    from bus.codec import CodecError, encode
    from bus.messages import NewConversation, Transcript
    from launch.attach import actor_set_for, find_running, heard_by, load_command_config, wanted_roles
    from launch.turns import TurnDriver, record_wait_s

    if args.attach and args.output:
        return attach_refused("say", "--output")
    text = " ".join(args.text)
    try:
        encode(Transcript(session=args.session, text=text, source="typed"))  # it must fit on the bus
    except CodecError:
        print(f"rocky-relay say: the text is too long ({len(text.encode('utf-8'))} bytes) to travel on the bus; "
              "say it in a few sentences", file=sys.stderr)
        return 2
    overrides = ["player.backend=wav", f"player.path={Path(args.output).resolve()}"] if args.output else []
    config = load_command_config(args, overrides)
    running = find_running(config, wanted_roles(config, "typed"))
    if running is not None and args.output:
        return attach_refused("say", "--output", running)
    with actor_set_for(config, "typed", "say", args.attach, running):
        driver = TurnDriver(bus_address(config), session=args.session,
                            link_timeout_s=config.satellite.link_timeout_s, source="typed",
                            wait_s=record_wait_s(config))
        try:
            heard_by(driver.client, {"logger"})  # the record must not be dropped at the logger's socket
            if args.new:  # on the socket the question takes: the llm forgets before it reads the question
                driver.client.publish(NewConversation(session=args.session))
            record = driver.typed_turn(text, on_event=own_turn_events(driver, args.all_sessions))
        finally:
            driver.close()
    print_record(record, args.json)
    return 0 if record["status"] == "ok" else 1


def own_turn_events(driver: Any, all_sessions: bool, write: Callable[[str], None] = print) -> Printer:
    """What to show while a driver's turn runs: that turn's words (not another client's, unless asked), and no
    error line, which the record (or the driver's own account of it) prints once."""
    from launch.turns import print_event

    def show(env: Envelope) -> None:
        if isinstance(env.msg, TurnError):
            return
        if (env.msg.session, env.msg.turn) == (driver.session, driver.button.turn):
            print_event(env, write)
        elif all_sessions:
            print_event(env, lambda line: write(f"[{env.msg.session}] {line}"))

    return show


def print_record(record: dict[str, Any], as_json: bool) -> None:
    from launch.turns import format_record

    print(format_record(record))
    if as_json:
        print(json.dumps(record))
    if record.get("not_saved"):
        print(f"rocky-relay: warning: this turn's record is not saved yet: {record['not_saved']}", file=sys.stderr)


def attach_refused(command: str, option: str, running: RunningSet | None = None) -> int:
    """--input/--output choose the mic/player of the set a command starts; a running set has its own."""
    actor, what = ("mic", "listens") if option == "--input" else ("player", "plays")
    if running is None:
        print(f"rocky-relay {command}: {option} would be ignored with --attach (the running set's {actor} {what}, "
              f"not this file): drop --attach to start a set that uses it, or launch the set with "
              f"--set {actor}.backend=wav --set {actor}.path=FILE", file=sys.stderr)
    else:
        print(f"rocky-relay {command}: {option} would be ignored: a set runs at {running.address.sub_addr} and its "
              f"{actor} {what}, not this file. Give this command a bus of its own (--set bus.pub=ipc:///tmp/rr/pub "
              "--set bus.sub=ipc:///tmp/rr/sub) to start a set that uses it, or stop the running one",
              file=sys.stderr)
    return 2
