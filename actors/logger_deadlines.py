"""Progress deadlines: which stage an open turn waits on, and whether that stage has gone quiet.

A stage that stops making progress (a process stopped with SIGSTOP, a backend hung in a C call, a
connection ZeroMQ dropped while the peer was frozen, so its messages were lost) would otherwise leave the
turn open until `logger.turn_timeout_s` (two minutes) with nothing said. Instead, each open turn is
checked against the one stage it waits on now, the first unfinished one in pipeline order:

    mic (after the release) -> stt -> llm -> persona -> tts -> player

and when neither that turn nor any other turn has heard from that stage for `stage_timeout_s`, the turn
ends with a `TurnError` naming the stage. "Any other turn" matters: an LLM busy generating another
satellite's reply, or a TTS speaking it, is making progress, and a turn queued behind it is not stalled.

The player gets the length of the audio it still has to play on top (it says nothing between `started`
and `finished`). A turn whose button is still held waits on the person, not on a stage; an interrupted
turn waits only on the player's `stopped`.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.link import HOST, LINK_TIMEOUT_S
from actors.table import ACTORS
from actors.timing import TurnTimeline
from bus.messages import Message, Transcript

PIPELINE = tuple(spec.name for spec in ACTORS if spec.waited_on)
"""Stages in the order a turn needs them: the rows of actors/table.py that a turn waits on."""


def producer(msg: Message) -> str | None:
    """The stage whose work `msg` shows (None: not a stage's output, e.g. a button or a typed transcript)."""
    if isinstance(msg, Transcript) and msg.source != "speech":
        return None  # typed: no stage made it
    return next((spec.name for spec in ACTORS if spec.waited_on and isinstance(msg, spec.publishes)), None)


def waited_stage(timeline: TurnTimeline) -> str | None:
    """The stage `timeline` waits on now, or None while it waits on the person (the button is held)."""
    if timeline.interrupt is not None:
        return "player" if timeline.waits_on("player") else None
    if timeline.press is not None and timeline.release is None:
        return None
    return next((stage for stage in PIPELINE if timeline.waits_on(stage)), None)


class StageProgress:
    """When each stage last showed progress on any turn, and which open turns it has stalled."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.last: dict[str, float] = {}

    def saw(self, msg: Message, at: float) -> None:
        if (stage := producer(msg)) is not None:
            self.last[stage] = at

    def stalled(self, timelines: Iterable[TurnTimeline], at: float) -> list[tuple[TurnTimeline, str]]:
        """(turn, stage) for every turn whose stage has been quiet past its deadline at `at`."""
        timelines = list(timelines)
        # What each session's player still has to play: a turn behind a long reply waits for it.
        queued_audio: dict[str, float] = {}
        for timeline in timelines:
            if timeline.waits_on("player"):
                queued_audio[timeline.session] = queued_audio.get(timeline.session, 0.0) + timeline.audio_s
        found: list[tuple[TurnTimeline, str]] = []
        for timeline in timelines:
            stage = waited_stage(timeline)
            if stage is None:
                continue
            quiet_since = max(timeline.last_activity, self.last.get(stage, 0.0))
            allowed = self.timeout_s + (queued_audio.get(timeline.session, 0.0) if stage == "player" else 0.0)
            if at - quiet_since > allowed:
                found.append((timeline, stage))
        return found

    def reason(self, stage: str) -> str:
        return (f"{stage} made no progress for {self.timeout_s:g} s (stopped, hung or overloaded); the turn was "
                f"ended so it does not hang: see logs/actors/{stage}.log, and logger.stage_timeout_s")


LOCAL_SESSION = "local"
"""Messages' default session: the one of a set on one machine (a satellite always has its own)."""


def silent_player(session: str, host: str, timeout_s: float = LINK_TIMEOUT_S) -> tuple[str, str]:
    """(stage, reason) for a session whose player stopped answering the server's heartbeats. A satellite's is
    the link (or the satellite); the local set's has no network in between: the player is stalled. (Host
    names alone do not tell: a satellite in a network namespace of this machine has the same one.)"""
    if session == LOCAL_SESSION and host == HOST:
        return "player", (f"player made no progress: it stopped answering the heartbeat for {timeout_s:g} s "
                          "(stopped, hung or overloaded); see logs/actors/player.log")
    return "link", f"satellite {session} stopped answering (network down or powered off)"
