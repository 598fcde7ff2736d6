"""Simulated satellites for tests/test_two_hosts.py, run inside the "pi" network namespace.

    python -m tests.satellite_driver satellites SPEC.json   # edge sets driven over stdin (below)
    python -m tests.satellite_driver probe PUB SUB SESSION SECONDS (--keys DIR | --server-key FILE)

`satellites`: SPEC is {"log_dir": DIR, "satellites": {SESSION: ["section.key=value", ...]}}. Each satellite
gets its own supervised edge set (its own mic and player processes, `satellite.session` = SESSION) and its
own TurnDriver. One command per stdin line; every answer is one JSON object per stdout line ("event" key):
    turn S1 WAV1 [S2 WAV2 ...]  all at once, released as TurnDriver.spoken_turn does; "speaking" once the
                                turn is under way, then "record" with the driver's record
    timed S WAV                 the same, released at a fixed time after the WAV's end (see `timed_turn`)
    link S                      "link" once S hears the server's beats again and its own actors answer
    quit
`probe` publishes Pings and Transcripts as SESSION and reports what it receives: with an allowed key store,
or with a key pair of its own and only the server's public key (a rogue). SESSION "-" only listens.
`SatelliteHost` (at the end) is the test's side of `satellites`.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import zmq
from zmq.auth import load_certificate

from audio.wav import TARGET_RATE, load_pcm16_mono
from bus.codec import Envelope
from bus.handshake import prove_path, wait_for_actors
from bus.keys import load_keys
from bus.messages import AudioFrame, Heartbeat, Ping, Transcript
from bus.security import CurveKeys
from bus.sockets import BusAddress, BusClient
from launch.config import bus_address, load_config
from launch.logsetup import configure_logging
from launch.supervisor import Supervisor
from launch.turns import TurnDriver
from tests.netns import Hosts, LineReader

EDGE = ["mic", "player"]
ROOT = Path(__file__).resolve().parents[1]
FRAME_S = 0.02
Event = dict[str, Any]
_out_lock = threading.Lock()
_nonces = itertools.count(1 << 20)


def emit(event: str, **fields: Any) -> None:
    with _out_lock:
        print(json.dumps({"event": event, **fields}), flush=True)


class Satellite:
    def __init__(self, session: str, overrides: list[str], log_dir: Path) -> None:
        self.session = session
        self.config = load_config(None, [*overrides, f"satellite.session={session}"])
        self.supervisor = Supervisor(self.config, EDGE, log_dir=log_dir / session)
        self.driver: TurnDriver | None = None
        self.busy = threading.Lock()
        """A TurnDriver's socket belongs to one thread at a time."""

    def start(self) -> TurnDriver:
        self.supervisor.start(timeout_s=60)
        self.driver = TurnDriver(bus_address(self.config), session=self.session)
        # Ready once the server's beats arrive and our player answers them, as a Pi's LEDs turn green.
        if not self.linked(self.driver, time.monotonic() + 30):
            raise TimeoutError(f"{self.session}: no heartbeat exchange with the server")
        return self.driver

    def stop(self) -> None:
        if self.driver is not None:
            self.driver.close()
        self.supervisor.stop()

    def turn(self, driver: TurnDriver, wav: str, timed: bool) -> None:
        with self.busy:
            shutil.copyfile(wav, self.config.section("mic").path)  # the WAV mic reads its file at each press
            started = time.monotonic()
            framed = spoke = False

            def on_event(env: Envelope) -> None:
                nonlocal framed, spoke
                framed = framed or (isinstance(env.msg, AudioFrame)
                                    and (env.msg.session, env.msg.turn) == (self.session, driver.button.turn))
                # Under way: the server echoed a frame of the turn, and the driver's link watch is armed (it
                # starts over at each press and arms at the first server beat of the turn).
                if framed and not spoke and driver.link.last_beat is not None:
                    spoke = True
                    emit("speaking", session=self.session, turn=driver.button.turn)

            try:
                record = self.timed_turn(driver, wav) if timed else driver.spoken_turn(timeout_s=120,
                                                                                       on_event=on_event)
            except Exception as exc:
                emit("record", session=self.session, record=None, reason=f"{type(exc).__name__}: {exc}")
                return
            emit("record", session=self.session, record=record, elapsed_s=time.monotonic() - started)

    @staticmethod
    def timed_turn(driver: TurnDriver, wav: str, tail_s: float = 0.1) -> dict[str, Any]:
        """Press, then release `tail_s` after the WAV's end as the mic's own stamps place it: when a person
        would, whatever the network. `spoken_turn` releases once the mic's last frame came back through
        the server, a round trip later, which gives a slower link's server more time before the release."""
        duration_s = len(load_pcm16_mono(wav)) / TARGET_RATE
        turn = driver.button.press()
        release_at: float | None = None
        deadline = time.monotonic() + duration_s + 30
        while release_at is None or time.time() < release_at:
            if time.monotonic() > deadline:
                raise TimeoutError(f"turn {turn}: no frame of it came back through the server")
            wait_ms = 100.0 if release_at is None else max(0.0, 1000 * (release_at - time.time()))
            env = driver.recv(wait_ms)
            if (release_at is None and env is not None and isinstance(env.msg, AudioFrame)
                    and (env.msg.session, env.msg.turn) == (driver.session, turn)):
                release_at = env.msg.ts - env.msg.seq * FRAME_S + duration_s + tail_s
        driver.button.release()
        return driver.wait_record(turn, 120)

    def linked(self, driver: TurnDriver, deadline: float) -> bool:
        """Wait until a server beat arrives, our player answers one, and our own actors answer pings."""
        driver.client.subscribe("ctl.heartbeat")
        server_beat = player_beat = False
        while not (server_beat and player_beat) and time.monotonic() < deadline:
            env = driver.recv(100)
            if env is not None and isinstance(env.msg, Heartbeat):
                server_beat = server_beat or env.msg.role == "server"
                player_beat = player_beat or (env.msg.role == "edge" and env.msg.session == self.session)
        try:
            prove_path(driver.client, timeout_s=max(0.1, deadline - time.monotonic()))
            # Our own mic and player (by pid): another satellite's of the same names are not ours.
            wait_for_actors(driver.client, set(self.supervisor.children), max(0.1, deadline - time.monotonic()),
                            pids=self.supervisor.pid)
        except TimeoutError:
            return False
        return server_beat and player_beat

    def relink(self, driver: TurnDriver, timeout_s: float = 60.0) -> None:
        started = time.monotonic()
        with self.busy:
            up = self.linked(driver, started + timeout_s)
        emit("link", session=self.session, up=up, waited_s=time.monotonic() - started)


def run_satellites(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    satellites = {s: Satellite(s, o, Path(spec["log_dir"])) for s, o in spec["satellites"].items()}
    threads: list[threading.Thread] = []
    try:
        drivers = {s: satellite.start() for s, satellite in satellites.items()}
        emit("ready", sessions=sorted(satellites))
        for line in sys.stdin:
            command, *args = line.split()
            if command == "quit":
                break
            if command in ("turn", "timed"):
                jobs = [threading.Thread(target=satellites[s].turn, args=(drivers[s], w, command == "timed"))
                        for s, w in zip(args[::2], args[1::2], strict=True)]
            elif command == "link":
                jobs = [threading.Thread(target=satellites[args[0]].relink, args=(drivers[args[0]],))]
            else:
                emit("error", reason=f"unknown command {command!r}")
                continue
            for job in jobs:
                job.daemon = True
                job.start()
            threads += jobs
    finally:
        for job in threads:
            job.join(timeout=5)
        for satellite in satellites.values():
            satellite.stop()
    return 0


def run_probe(pub: str, sub: str, session: str, seconds: float, keys: CurveKeys) -> int:
    """Listen to the whole bus for `seconds`, reporting every session heard. As "-" only listen, once our path
    through the proxy is proven ("listening"); else publish Pings and Transcripts as `session` meanwhile."""
    client = BusClient(BusAddress(pub, sub, curve=keys), ("",), name="probe")
    topics: dict[str, int] = {}
    sessions: dict[str, int] = {}
    echoes = published = 0
    nonce, turn = next(_nonces), int(time.time() * 1000)
    try:
        if session == "-":
            prove_path(client)
            emit("listening")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if session != "-":
                client.publish(Ping(session=session, nonce=nonce))
                client.publish(Transcript(session=session, turn=turn, text="open the pod bay doors"))
                published += 2
            step_end = time.monotonic() + 0.1
            while (left := step_end - time.monotonic()) > 0:
                env = client.recv(timeout_ms=left * 1000)
                if env is not None:
                    topics[env.topic] = topics.get(env.topic, 0) + 1
                    sessions[env.msg.session] = sessions.get(env.msg.session, 0) + 1
                    echoes += isinstance(env.msg, Ping) and env.msg.nonce == nonce
    finally:
        client.close()
    emit("probe", session=session, key=keys.public.decode(), published=published, topics=topics,
         sessions=sessions, own_echoes=echoes)
    return 0


def main(argv: list[str]) -> int:
    configure_logging(json_output=True)  # stderr: stdout carries only the JSON answers
    # Teardown sends SIGTERM: leave through the `finally` blocks so the edge sets are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    mode, *args = argv
    if mode == "satellites":
        return run_satellites(args[0])
    if mode == "probe":
        pub, sub, session, seconds, option, value = args
        if option == "--keys":  # an allowed satellite's store, or the server's
            keys = load_keys(value)
        else:  # a key pair of its own, never put on the allow-list
            public, secret = zmq.curve_keypair()
            keys = CurveKeys(server_public=load_certificate(value)[0], public=public, secret=secret, name="rogue")
        return run_probe(pub, sub, session, float(seconds), keys)
    raise SystemExit(f"unknown mode {mode!r}")


# --- the test's side ---------------------------------------------------------------------------------------


def stop(proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    """SIGTERM first, so a supervisor stops its actors in order; Hosts' teardown kills whatever is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class SatelliteHost:
    """`satellites` running in a host (the pi namespace), one edge set per session."""

    def __init__(self, hosts: Hosts, folder: Path, sessions: dict[str, list[str]], host: str = "pi") -> None:
        self.folder = folder
        folder.mkdir(exist_ok=True)
        (folder / "spec.json").write_text(json.dumps({"log_dir": str(folder / "logs"), "satellites": sessions}))
        self.stderr: IO[str] = (folder / "driver.log").open("w")
        self.proc = hosts.run(host, [sys.executable, "-m", "tests.satellite_driver", "satellites",
                                     str(folder / "spec.json")], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.out = LineReader(self.proc.stdout)
        self.backlog: list[Event] = []
        self.next("ready", timeout_s=120)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def next(self, event: str, timeout_s: float, session: str | None = None) -> Event:
        """The first answer of kind `event` (for `session`), earlier unclaimed answers included."""
        def wanted(e: Event) -> bool:
            return e["event"] == event and session in (None, e.get("session"))

        deadline = time.monotonic() + timeout_s
        while not (found := next((e for e in self.backlog if wanted(e)), None)):
            try:
                line = self.out.readline(max(0.0, deadline - time.monotonic()))
            except (EOFError, TimeoutError) as exc:
                self.stderr.flush()
                tail = (self.folder / "driver.log").read_text().splitlines()[-15:]
                raise AssertionError(f"no {event!r} from the satellites: {exc}\n" + "\n".join(tail)) from exc
            self.backlog.append(json.loads(line))
        self.backlog.remove(found)
        return found

    def turns(self, wavs: dict[str, Path], timeout_s: float = 120.0, command: str = "turn") -> dict[str, Event]:
        """One spoken turn per session, all pressed at once; each session's record."""
        self.send(command + " " + " ".join(f"{s} {w}" for s, w in wavs.items()))
        answers = {s: self.next("record", timeout_s, session=s) for s in wavs}
        for session, answer in answers.items():
            assert answer["record"] is not None, f"{session}: {answer}"
        return {s: a["record"] for s, a in answers.items()}

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()  # EOF ends the command loop too
            except OSError:
                pass  # it died already: stop() below reaps it
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                stop(self.proc)
        self.stderr.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
