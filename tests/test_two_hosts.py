"""Two hosts over real TCP with CURVE: the server set in one network namespace, satellites in another.

One `server` set (proxy, logger, vad, stt, llm, persona, tts with the real models) serves the module in the
"server" namespace, bound to 10.231.0.1; each test starts its satellites in the "pi" namespace with
tests/satellite_driver.py (each satellite: its own mic and player processes, its own session and key).
Needs root for the namespaces (skips without); every process and namespace goes at the end, failed or not.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.wav import is_silent, resample, write_wav
from bus.keys import add_client, init_store, install_bundle
from tests.netns import Hosts, LineReader, require_root
from tests.satellite_driver import SatelliteHost, stop

pytestmark = pytest.mark.models
PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "launch" / "samples"
PUB_PORT, SUB_PORT = 7750, 7751
DELAY_REPORT = ROOT / "logs" / "two_hosts_delay.json"
TIMINGS = ("release_to_first_audio_ms", "bus_transit_ms_p50", "stt_ms", "llm_first_token_ms", "tts_first_chunk_ms")
Event = dict[str, Any]


@dataclass
class Net:
    hosts: Hosts
    root: Path
    keys: Path
    turns_file: Path
    """The server logger's records."""
    proxy_log: Path

    def server_records(self, session: str) -> list[Event]:
        if not self.turns_file.exists():
            return []
        lines = self.turns_file.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("session") == session]

    def server_record(self, session: str, turn: int, timeout_s: float = 15.0) -> Event:
        """The logger's record of one turn, once written (the file is the only signal: polled, bounded)."""
        deadline = time.monotonic() + timeout_s
        while not (found := [r for r in self.server_records(session) if r["turn"] == turn]):
            assert time.monotonic() < deadline, f"no server record for {session}/{turn} in {timeout_s} s"
            time.sleep(0.1)
        return found[-1]

    def proxy_event(self, wanted: Callable[[Event], bool], timeout_s: float = 10.0) -> Event:
        """The first line of the proxy's log that `wanted` picks (the log is the only signal: polled)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.proxy_log.read_text().splitlines() if self.proxy_log.exists() else []
            found: list[Event] = [e for e in map(json.loads, (x for x in lines if x.startswith("{"))) if wanted(e)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"not in the proxy's log after {timeout_s} s: {lines[-5:]}"
            time.sleep(0.1)

    def satellite_keys(self, name: str) -> Path:
        """A satellite's key store, made as a user would: `keys add` on the server, `keys install` on it."""
        store = self.root / "keys" / name
        install_bundle(add_client(self.keys, name), store)
        # The proxy re-reads its allow-list once a second, and libzmq never retries a peer refused once.
        self.proxy_event(lambda e: e.get("event") == "allowlist_reloaded" and name in e.get("added", []))
        return store


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="rr-2hosts-"))
    try:
        keys = root / "keys" / "server"
        init_store(keys)
        server_dir = root / "server"  # its cwd: the supervisor writes logs/actors/ there
        server_dir.mkdir()
        config = server_dir / "rocky-relay.toml"
        turns_file = server_dir / "turns.jsonl"
        with Hosts(("server", "pi", "rogue")) as hosts:
            address = hosts.address("server")
            config.write_text(f'[bus]\npub = "tcp://{address}:{PUB_PORT}"\nsub = "tcp://{address}:{SUB_PORT}"\n'
                              f'[security]\nkeys_dir = "{keys}"\n[logger]\npath = "{turns_file}"\n')
            server = hosts.run("server", [PY, "-m", "launch.cli", "--config", str(config), "launch", "server"],
                               cwd=server_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                LineReader(server.stderr).wait_for("ready on", 180)
                yield Net(hosts, root, keys, turns_file, server_dir / "logs" / "actors" / "proxy.log")
            finally:
                stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def satellite(net: Net, session: str, folder: Path, *, key: str,
              bus: tuple[str, str] | None = None) -> list[str]:
    """The settings of one satellite: its own key, WAV mic and WAV player; the server's address by default."""
    server = net.hosts.address("server")
    pub, sub = bus or (f"tcp://{server}:{PUB_PORT}", f"tcp://{server}:{SUB_PORT}")
    (folder / session).mkdir(parents=True)
    return [f"bus.pub={pub}", f"bus.sub={sub}", f"security.keys_dir={net.satellite_keys(key)}",
            "mic.backend=wav", f"mic.path={folder / session / 'mic.wav'}", "mic.realtime=true",
            "player.backend=wav", f"player.path={folder / session / 'replies'}/{{session}}-{{turn}}.wav"]


def replies(folder: Path, session: str) -> list[Path]:
    return sorted((folder / session / "replies").glob("*.wav"))


def reply_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


@pytest.fixture
def satellites(net: Net) -> Iterator[Callable[[str, dict[str, list[str]]], SatelliteHost]]:
    started: list[SatelliteHost] = []

    def start(name: str, sessions: dict[str, list[str]]) -> SatelliteHost:
        started.append(SatelliteHost(net.hosts, net.root / name, sessions))
        return started[-1]

    try:
        yield start
    finally:
        for host in started:
            host.close()


def test_spoken_turn_from_the_pi_to_the_server_over_curve(net: Net, satellites: Any) -> None:
    folder = net.root / "one"
    pi = satellites("one", {"pi": satellite(net, "pi", folder, key="pi")})
    record = pi.turns({"pi": SAMPLES / "prompt-3s.wav"})["pi"]
    assert record["status"] == "ok", record
    assert "planet" in record["text_in"].lower(), record["text_in"]
    (reply,) = replies(folder, "pi")
    assert reply.name == f"pi-{record['turn']}.wav"
    assert not is_silent(reply_pcm(reply))
    on_server = net.server_record("pi", record["turn"])
    assert on_server["status"] == "ok" and on_server["text_in"] == record["text_in"]
    print(f"\none turn pi -> server: release_to_first_audio_ms {record['release_to_first_audio_ms']:.0f}, "
          f"bus_transit_ms_p50 {record['bus_transit_ms_p50']}")


def probe(net: Net, host: str, session: str, seconds: float, keys: list[str]) -> LineReader:
    server = net.hosts.address("server")
    proc = net.hosts.run(host, [PY, "-m", "tests.satellite_driver", "probe", f"tcp://{server}:{PUB_PORT}",
                                f"tcp://{server}:{SUB_PORT}", session, str(seconds), *keys],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return LineReader(proc.stdout)


def answer(reader: LineReader, timeout_s: float = 30.0) -> Event:
    """A probe's report."""
    result: Event = json.loads(reader.wait_for('"event": "probe"', timeout_s))
    return result


def test_a_host_with_an_unknown_key_is_refused(net: Net) -> None:
    control_keys = net.satellite_keys("control")
    server_side = probe(net, "server", "-", 8, ["--keys", str(net.keys)])  # hears what any actor would
    server_side.wait_for('"event": "listening"', 30)
    # Same host, same code, same server key: the only difference is whether the key is on the allow-list.
    rogue = probe(net, "rogue", "rogue", 4, ["--server-key", str(net.keys / "server.key")])
    control = probe(net, "rogue", "control", 4, ["--keys", str(control_keys)])
    refused, allowed, heard = answer(rogue), answer(control), answer(server_side)

    assert allowed["own_echoes"] > 0 and allowed["topics"].get("ctl.heartbeat", 0) > 0, allowed
    assert "control" in heard["sessions"], heard
    assert refused["published"] > 0 and refused["topics"] == {} and refused["own_echoes"] == 0, refused
    assert "rogue" not in heard["sessions"], heard
    assert not net.server_records("rogue")
    refusal = net.proxy_event(lambda e: e.get("event") == "refused_peer" and e.get("key") == refused["key"])
    assert refusal["peer"] == net.hosts.address("rogue"), refusal


def test_link_down_mid_turn_fails_cleanly_and_the_next_turn_succeeds(net: Net, satellites: Any) -> None:
    folder = net.root / "link"
    pi = satellites("link", {"pi-link": satellite(net, "pi-link", folder, key="pi-link")})
    pi.send(f"turn pi-link {SAMPLES / 'prompt-3s.wav'}")
    turn = pi.next("speaking", 30, session="pi-link")["turn"]  # the server has the turn: pull the cable
    net.hosts.link_down("pi")
    cut = time.monotonic()
    try:
        failed = pi.next("record", 15, session="pi-link")["record"]
        noticed_s = time.monotonic() - cut
        assert failed["turn"] == turn and failed["status"] == "error", failed
        assert failed["error"]["stage"] == "link" and failed["local_only"], failed
        on_server = net.server_record("pi-link", turn, timeout_s=15)
        assert on_server["status"] == "error" and on_server["error"]["stage"] == "link", on_server
    finally:
        net.hosts.link_up("pi")
    assert list((folder / "pi-link" / "replies").glob("error-*.wav")), "the pi's player sounded no earcon"
    pi.send("link pi-link")  # as a user would: press again once the Pi shows the link is back
    back = pi.next("link", 60, session="pi-link")
    assert back["up"], back
    again = pi.turns({"pi-link": SAMPLES / "prompt-3s.wav"})["pi-link"]
    assert again["status"] == "ok" and "planet" in again["text_in"].lower(), again
    assert not is_silent(reply_pcm(folder / "pi-link" / "replies" / f"pi-link-{again['turn']}.wav"))
    assert net.server_record("pi-link", again["turn"])["status"] == "ok"
    print(f"\nlink cut mid-turn: the pi gave up after {noticed_s:.1f} s; relinked {back['waited_s']:.1f} s after "
          f"the replug; next turn ok, release_to_first_audio_ms {again['release_to_first_audio_ms']:.0f}")


QUESTIONS = {"sat-1": ("How many legs does a spider have?", "spider"),
             "sat-2": ("Why is the ocean salty?", "ocean"),
             "sat-3": ("Can you tell me a joke about a banana?", "banana"),
             "sat-4": ("What is the biggest planet in our solar system?", "planet")}


def spoken(net: Net, questions: dict[str, str]) -> dict[str, Path]:
    """Each question as Piper says it (16 kHz, a little silence around it), as a WAV per key."""
    from piper import PiperVoice

    from models.registry import tts_voice_file

    voice: Any = PiperVoice.load(tts_voice_file(""))
    wavs = {}
    for key, text in questions.items():
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)]).astype(np.float32)
        pad = np.zeros(3200, dtype=np.float32)
        pcm = np.concatenate([pad, resample(audio, voice.config.sample_rate, 16000), pad])
        wavs[key] = net.root / f"{key}.wav"
        write_wav(wavs[key], (np.clip(pcm, -1, 1) * 32767).astype(np.int16), 16000)
    return wavs


def test_four_satellites_at_once_each_get_their_own_reply(net: Net, satellites: Any) -> None:
    folder = net.root / "four"
    wavs = spoken(net, {s: q for s, (q, _) in QUESTIONS.items()})
    host = satellites("four", {s: satellite(net, s, folder, key=s) for s in QUESTIONS})
    records = host.turns(wavs, timeout_s=180)
    busy = {s: r for s, r in records.items() if r["status"] == "error" and "busy" in r["error"]["reason"]}
    assert not busy, f"refused as busy (max_queued_turns is 4, so none should be): {busy}"
    for session, record in records.items():
        keyword = QUESTIONS[session][1]
        assert record["status"] == "ok" and record["session"] == session, record
        assert keyword in record["text_in"].lower(), (session, record["text_in"])
        # Its reply is in its own player's folder, and no other session's audio is there.
        assert [p.name for p in replies(folder, session)] == [f"{session}-{record['turn']}.wav"]
        assert not is_silent(reply_pcm(replies(folder, session)[0]))
        assert net.server_record(session, record["turn"])["text_in"] == record["text_in"]
    print("\nfour satellites at once:")
    for session, record in records.items():
        print(f"  {session}: {record['text_in']!r} -> {record['spoken_text']!r}, "
              f"release_to_first_audio_ms {record['release_to_first_audio_ms']:.0f}")


def delay_proxy(net: Net, port: int) -> int:
    """A 20 ms-each-way proxy in the pi namespace to the server's `port`; its local port."""
    proc = net.hosts.run("pi", [PY, "-m", "tests.delay_proxy", "--listen", "127.0.0.1:0", "--target",
                                f"{net.hosts.address('server')}:{port}", "--delay-ms", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return int(LineReader(proc.stdout).wait_for("listening", 15).rsplit(":", 1)[1])


def test_a_20_ms_delay_each_way_and_release_to_first_audio(net: Net, satellites: Any) -> None:
    folder = net.root / "delay"
    pub, sub = delay_proxy(net, PUB_PORT), delay_proxy(net, SUB_PORT)
    host = satellites("delay", {
        "direct": satellite(net, "direct", folder, key="direct"),
        "delayed": satellite(net, "delayed", folder, key="delayed",
                             bus=(f"tcp://127.0.0.1:{pub}", f"tcp://127.0.0.1:{sub}"))})
    measured: dict[str, list[Event]] = {"direct": [], "delayed": []}
    load_before = os.getloadavg()[0]  # other work on the box is the main source of noise: say how much
    # Interleaved (same load, same growing memory) in ABBA order: the two sessions ask the same question and
    # get the same seeded reply, so the second of two neighbours finds its whole prompt in the LLM's cache.
    for round_ in range(6):
        for session in ("direct", "delayed")[:: 1 if round_ % 2 == 0 else -1]:
            record = host.turns({session: SAMPLES / "prompt-1s.wav"}, command="timed")[session]
            assert record["status"] == "ok", record
            measured[session].append(record)
    figures = {session: {key: [r[key] for r in turns] for key in TIMINGS}
               for session, turns in measured.items()}
    medians = {s: {k: statistics.median(v) for k, v in f.items()} for s, f in figures.items()}
    report = {"delay_ms_each_way": 20, "question": measured["direct"][0]["text_in"], "medians": medians,
              "turns": figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "release": "0.1 s after the WAV's end on the mic's clock (timed_turn)", "cpu_cores": os.cpu_count(),
              "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]}}
    DELAY_REPORT.parent.mkdir(exist_ok=True)
    DELAY_REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n20 ms each way ({DELAY_REPORT}; load average {load_before:.1f} before, "
          f"{report['load_average_1m']['after']:.1f} after, on {os.cpu_count()} cores):")
    for key in figures["direct"]:
        direct, delayed = medians["direct"][key], medians["delayed"][key]
        print(f"  {key:28s} direct {direct:8.1f}  delayed {delayed:8.1f}  change {delayed - direct:+8.1f} ms")
    # The Pi's messages really went through the proxies: its button and capture-end stamps reach the logger
    # at least 20 ms late (the logger takes no mic frames, so the p50 is mostly the server's own messages).
    slowest = statistics.median(r["bus_transit_ms_max"] for r in measured["delayed"])
    assert slowest >= 19.5, medians
    # The figures are a report, not a claim: comparing the two sessions' milliseconds fails at random on a loaded
    # machine (3717 ms direct vs 790 ms delayed was seen). What the test holds to is behaviour: every turn of
    # both sessions ended ok (above), and the delayed one's messages really took the detour (the line before).
