"""The logger: listens to everything and writes one JSONL record per turn.

A turn's record is written when its playback finishes or stops, when a stage
reports a `TurnError`, when the stage it waits on makes no progress for
`stage_timeout_s` (an error naming the stage: actors/logger_deadlines.py), or
after `turn_timeout_s` without news (status "timeout"). Records go through `RecordFile` (one write per complete line,
rotated by size) and are also published on `turn.record` for whoever started
the turn.

A full disk: a record that does not fit is cut back off (never a torn line), the
turn's `turn.record` says `not_saved`, and the record waits in memory, tried
again every `RETRY_S`; only once it is on disk does the journal mark the turn
recorded.

Crashes: when the supervisor reports an actor dead (`ctl.down`), every open
turn that still needed it is ended at once — an `Interrupt` so the others drop
its work, a `TurnError` (the player sounds its earcon) and the record. When the
dead actor was the player itself, the error is sent again once the restarted
player answers a ping, so the earcon still sounds. A logger killed mid-turn
replays its journal when it restarts and finishes those records.

Satellites: the logger is the server's heartbeat (see actors/link.py). From
each satellite's answers it knows when one is gone (its open turns are ended)
and how far its clock is off, and moves that satellite's stamps onto this
host's clock before they enter a record.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, ClassVar

from actors.base import Actor
from actors.link import HEARTBEAT_S, HOST, ClockOffsets, LinkWatch, forget_long_lost
from actors.logger_deadlines import StageProgress, silent_player
from actors.logger_settings import DEADLINE_CHECK_S, RECOVERED_TIMEOUT_S, RETRY_S, LoggerSettings, json_safe
from actors.logger_store import Journal, RecordFile, SavedRecords, StoreWriteError
from actors.timing import TurnTimeline
from bus.codec import Envelope
from bus.messages import (
    ActorDown,
    Audible,
    AudioFrame,
    ButtonEvent,
    CaptureEnd,
    Heartbeat,
    Interrupt,
    Message,
    Ping,
    PlayerEvent,
    Ready,
    TurnError,
    TurnRecord,
    now,
)
from bus.privacy import redact_value

__all__ = ["LoggerActor", "LoggerSettings"]

SATELLITE_STAMPED = (ButtonEvent, AudioFrame, CaptureEnd, PlayerEvent, Audible)
"""Messages whose `ts` comes from the satellite's clock (its button, mic and player)."""
def _opens_turn(msg: Message) -> bool:
    """Whether `msg` may be the first the logger hears of a turn. An interrupt, the `stopped` that answers it
    and an error only end a turn: for one that never began (anyone may publish them) they make no record."""
    return not isinstance(msg, Interrupt | TurnError) and not (isinstance(msg, PlayerEvent) and msg.state == "stopped")


class LoggerActor(Actor):
    name: ClassVar[str] = "logger"
    # What a record is built from; not the mic's 50 frames a second, which a flood would bury turns under.
    topics = ("button", "audio.in.end", "stt.final", "llm.", "say", "audio.out", "player", "turn.", "audio.heard")
    poll_ms = 250.0
    delivered_when_cancelled = (Message,)  # an interrupted turn still gets its record

    def __init__(self, settings: LoggerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.turns: dict[tuple[str, int], TurnTimeline] = {}
        self.closed: dict[tuple[str, int], None] = {}
        self.recovered: set[tuple[str, int]] = set()
        self.backends: dict[str, str] = {}
        self.earcon_due: list[TurnError] = []
        """Errors of turns the player died in, to resend once a player is back."""
        self.earcon_deadline = 0.0
        self.next_ping = 0.0
        self.records: RecordFile | None = None
        self.journal: Journal | None = None
        self.journal_error = ""
        self.saved: SavedRecords | None = None
        self.next_retry = 0.0
        self.beat_seq = 0
        self.next_beat = 0.0
        self.clocks = ClockOffsets()
        self.satellites: dict[str, LinkWatch] = {}
        self.satellite_hosts: dict[str, str] = {}
        self.progress = StageProgress(settings.stage_timeout_s)
        self.next_check = 0.0

    def on_start(self) -> None:
        self.records = RecordFile(self.settings.path, self.settings.max_bytes, self.settings.backups)
        self.journal = Journal(f"{self.settings.path}.journal")
        self.saved = SavedRecords(self.records, self.journal)
        self._recover()

    def backend(self) -> str:
        return f"jsonl {self.settings.path}"

    def _recover(self) -> None:
        """Rebuild the turns a killed predecessor had open; they finish or time out as usual."""
        assert self.journal is not None
        seen, closed = self.journal.replay()
        for key in closed:
            self._close(key)
        for received_at, msg in seen:
            key = (msg.session, msg.turn)
            if key not in self.closed:
                self._timeline(key).observe(msg, received_at)
        self.recovered = set(self.turns)
        if self.recovered:
            self.log.warning("turns_recovered", turns=sorted(t for _, t in self.recovered))

    def on_control(self, env: Envelope) -> None:
        msg = env.msg
        self._beat()
        if isinstance(msg, Heartbeat):
            self._satellite_beat(msg)
        elif isinstance(msg, Ready):
            if msg.backend:
                self.backends[msg.actor] = msg.backend
            if msg.actor == "player" and self.earcon_due:
                for error in self.earcon_due:
                    self.publish(error)
                self.earcon_due = []
        elif isinstance(msg, ActorDown):
            self.log.warning("actor_down", actor=msg.actor, exit_code=msg.exit_code)
            errors = self._fail_turns_of(msg)
            if msg.actor == "player" and errors:
                self.earcon_due += errors
                self.earcon_deadline = now() + msg.restart_in_s + self.settings.earcon_wait_s
        elif msg.turn != 0:  # an interrupt belongs to its turn's record
            self.handle(env)

    def handle(self, env: Envelope) -> None:
        msg = env.msg
        if msg.turn == 0 or isinstance(msg, TurnRecord):
            return
        key = (msg.session, msg.turn)
        if key in self.closed or (key not in self.turns and not _opens_turn(msg)):
            return
        self._beat()
        received = now()
        if isinstance(msg, SATELLITE_STAMPED) and (shift := self.clocks.correction(msg.session)):
            msg = dataclasses.replace(msg, ts=msg.ts - shift)
            if isinstance(msg, Audible):
                msg = dataclasses.replace(msg, heard_at=msg.heard_at - shift)
            env = Envelope(env.topic, msg, env.payload)
        assert self.journal is not None
        try:
            self.journal.append(env, received)
            self.journal_error = ""
        except StoreWriteError as exc:  # the turn goes on; only a restart of the logger would lose it
            if not self.journal_error:
                self.log.error("journal_not_written", error=str(exc))
            self.journal_error = str(exc)
        timeline = self._timeline(key)
        timeline.observe(msg, received, len(env.payload))
        self.progress.saw(msg, received)
        if timeline.complete:
            self._write(key, timeline.record(self.backends))
        self._check_deadlines(received)

    def _beat(self) -> None:
        """The server's heartbeat, once a second, busy or idle."""
        t = now()
        if t >= self.next_beat:
            self.beat_seq += 1
            self.next_beat = t + HEARTBEAT_S
            self.publish(Heartbeat(role="server", host=HOST, seq=self.beat_seq, ts=t))

    def _satellite_beat(self, beat: Heartbeat) -> None:
        if beat.role != "edge":
            return
        t = now()
        if beat.echo_seq >= 0:
            self.clocks.add(beat.session, beat.echo_ts, beat.ts, t)
        new = beat.session not in self.satellites
        self.satellite_hosts[beat.session] = beat.host
        watch = self.satellites.setdefault(beat.session, LinkWatch(self.link_timeout_s))
        if watch.beat(t) or new:
            self.log.info("satellite_up", session=beat.session, host=beat.host,
                          clock_offset=self.clocks.offset(beat.session))

    def on_idle(self) -> None:
        t = now()
        self._beat()
        if self.saved is not None and self.saved.waiting and t >= self.next_retry:
            self.next_retry = t + RETRY_S
            for key in self.saved.retry():
                self.log.warning("turn_recorded_late", turn=key[1], still_waiting=len(self.saved.waiting))
        for session, watch in self.satellites.items():
            if watch.poll(t):
                self.log.warning("satellite_lost", session=session)
                stage, reason = silent_player(session, self.satellite_hosts.get(session, ""),
                                              self.link_timeout_s)
                self._fail_turns(lambda timeline, s=session: timeline.session == s, stage, reason)  # type: ignore[misc]
        for session in forget_long_lost(self.satellites, t):
            self.satellite_hosts.pop(session, None)
            self.clocks.samples.pop(session, None)
        if self.earcon_due and t >= self.earcon_deadline:
            self.log.warning("player_not_back", turns=[e.turn for e in self.earcon_due])
            self.earcon_due = []
        elif self.earcon_due and t >= self.next_ping:
            # A restarted actor's own Ready can leave before its connection is up: ask again.
            self.publish(Ping(nonce=0))
            self.next_ping = t + 0.5
        self._check_deadlines(t)

    def _check_deadlines(self, t: float) -> None:
        """End the turns whose stage went quiet, and those with no news at all for turn_timeout_s."""
        if t < self.next_check:
            return
        self.next_check = t + DEADLINE_CHECK_S
        live = [timeline for key, timeline in self.turns.items() if key not in self.recovered]
        for stalled, stage in self.progress.stalled(live, t):
            self.log.warning("stage_stalled", stage=stage, session=stalled.session, turn=stalled.turn)
            self._fail_turns(lambda timeline, s=stalled: timeline is s, stage,  # type: ignore[misc]
                             self.progress.reason(stage))
        for key, timeline in list(self.turns.items()):
            limit = RECOVERED_TIMEOUT_S if key in self.recovered else self.settings.turn_timeout_s
            if timeline.last_activity < t - limit:
                record = timeline.record(self.backends, timed_out=True)
                if key in self.recovered:
                    record["status"] = "error"
                    record["error"] = {"stage": "logger", "reason": "the logger restarted during this turn "
                                       "and did not see its end; timings after the restart are missing"}
                self._write(key, record)

    def _fail_turns_of(self, down: ActorDown) -> list[TurnError]:
        """End every open turn that still needed the dead actor."""
        reason = (f"{down.actor} stopped during this turn (exit code {down.exit_code}) and was restarted; "
                  f"see logs/actors/{down.actor}.log")
        # A turn id is its start in ms: one begun after the death (the report can come late) is not a victim.
        began_before = (lambda timeline: timeline.turn / 1000 <= down.died_at) if down.died_at else (lambda _t: True)
        return self._fail_turns(lambda timeline: timeline.waits_on(down.actor) and began_before(timeline),
                                down.actor, reason)

    def _fail_turns(self, which: Callable[[TurnTimeline], bool], stage: str, reason: str) -> list[TurnError]:
        """End the open turns `which` picks: cancel their work everywhere, report the error, record them."""
        failed: list[TurnError] = []
        for (session, turn), timeline in list(self.turns.items()):
            if not which(timeline):
                continue
            error = TurnError(session=session, turn=turn, stage=stage, reason=reason)
            self.publish(Interrupt(session=session, turn=turn, reason=f"{stage} failed"))
            self.publish(error)
            timeline.observe(error, now())
            self._write((session, turn), timeline.record(self.backends))
            failed.append(error)
        return failed

    def _timeline(self, key: tuple[str, int]) -> TurnTimeline:
        if key not in self.turns:
            self.turns[key] = TurnTimeline(session=key[0], turn=key[1])
        return self.turns[key]

    def _close(self, key: tuple[str, int]) -> None:
        self.turns.pop(key, None)
        self.recovered.discard(key)
        self.closed[key] = None
        while len(self.closed) > 1024:
            self.closed.pop(next(iter(self.closed)))

    def _write(self, key: tuple[str, int], record: dict[str, Any]) -> None:
        assert self.records is not None and self.journal is not None
        if key in self.recovered:
            record["logger_restarted"] = True
        offset = self.clocks.offset(key[0])
        record["satellite_clock_offset_ms"] = round(1000 * offset[0], 3) if offset else None
        record["satellite_clock_corrected"] = bool(self.clocks.correction(key[0]))
        record = redact_value(record)  # an error text or a backend may name a URL with its password
        self._close(key)
        assert self.saved is not None
        if self.saved.save(key, json.dumps(json_safe(record), separators=(",", ":"), allow_nan=False)):
            self.log.info("turn_recorded", turn=key[1], status=record["status"],
                          release_to_first_audio_ms=record["release_to_first_audio_ms"])
        else:  # the turn is over all the same: whoever waits on it hears so, and that its record is not saved
            self.log.error("record_not_saved", turn=key[1], error=self.saved.error, waiting=len(self.saved.waiting))
            record = {**record, "not_saved": f"{self.saved.error}; the logger tries again every {RETRY_S:g} s"}
        if not self.saved.waiting:  # a record still waiting needs its turn's journal entries
            self.journal.compact_if_idle(len(self.turns))
        self.publish(TurnRecord(session=key[0], turn=key[1], record=record))

    def on_stop(self) -> None:
        if self.saved is not None and self.saved.waiting:
            self.saved.retry()  # what still does not fit stays in the journal: the next logger writes it
        if self.records is not None:
            self.records.close()
        if self.journal is not None:
            self.journal.close()
