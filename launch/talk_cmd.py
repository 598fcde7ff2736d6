"""`rocky-relay talk`: push-to-talk turns in a live terminal, or one spoken turn from a WAV.

Like `say`, it uses the set that serves the bus (`rocky-relay serve`) and starts one only when none runs.
The live terminal is `launch/live_talk.py`; the keys are `launch/keyboard.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from launch.config import bus_address
from launch.live_talk import ExtraKey
from launch.say_cmd import add_set_options, attach_refused, own_turn_events, print_record


def new_conversation(talk: Any) -> None:
    """Forget this session's conversation (the llm does it; the session guard lets a satellite clear only its
    own). Sent on the socket the next turn takes, so it arrives before that turn's words."""
    from bus.messages import NewConversation

    talk.driver.client.publish(NewConversation(session=talk.driver.session))
    talk.screen.line("new conversation: Rocky forgets what was said before")


EXTRA_KEYS: dict[str, ExtraKey] = {"n": ("new conversation", new_conversation)}
"""Keys beyond talk and quit that work while ready: key -> (what it does, shown in the prompt; the action,
given the LiveTalk)."""


def register(sub: Any) -> None:
    talk = sub.add_parser("talk", help="push-to-talk turns (space or Enter to talk), or one turn from a WAV")
    talk.add_argument("--input", help="a WAV to use as the spoken question (one turn, no microphone)")
    talk.add_argument("--output", help="write the spoken reply to this WAV instead of the speaker")
    talk.add_argument("--actors", default="local", help="actor set to start when none runs (default: local)")
    add_set_options(talk, "talk")
    # More options of the live terminal go here.
    talk.set_defaults(func=cmd_talk)


def cmd_talk(args: argparse.Namespace) -> int:
    from launch.attach import actor_set_for, find_running, heard_by, load_command_config, wanted_roles
    from launch.turns import TurnDriver, record_wait_s

    overrides: list[str] = []
    if args.attach and (args.input or args.output):
        return attach_refused("talk", "--input" if args.input else "--output")
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
    config = load_command_config(args, overrides)
    running = find_running(config, wanted_roles(config, args.actors))
    if running is not None and (args.input or args.output):
        return attach_refused("talk", "--input" if args.input else "--output", running)
    with actor_set_for(config, args.actors, "talk", args.attach, running):
        driver = TurnDriver(bus_address(config), session=args.session,
                            link_timeout_s=config.satellite.link_timeout_s,
                            source="script" if args.input else "keyboard", wait_s=record_wait_s(config))
        try:
            heard_by(driver.client, {"logger"})  # the record must not be dropped at the logger's socket
            if args.input:
                record = driver.spoken_turn(on_event=own_turn_events(driver, args.all_sessions))
                print_record(record, args.json)
                return 0 if record["status"] == "ok" else 1
            return live(driver, args.all_sessions)
        finally:
            driver.close()


def live(driver: Any, all_sessions: bool) -> int:
    from launch.keyboard import KeyReader
    from launch.live_talk import LiveTalk, Screen

    with KeyReader(sys.stdin) as keys:
        return LiveTalk(driver, keys, Screen(sys.stdout), all_sessions=all_sessions, extra_keys=EXTRA_KEYS).run()
