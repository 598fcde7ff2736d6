"""`rocky-relay tap` hides heartbeats and mic frames unless asked for, and can follow one session."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

from bus.codec import Envelope
from bus.handshake import prove_path
from bus.messages import AudioChunk, AudioFrame, CaptureEnd, Heartbeat, Say
from bus.sockets import BusAddress, BusClient
from bus.tap import shown, tap
from launch.cli import build_parser


def _env(msg: object) -> Envelope:
    return Envelope(topic="", msg=msg, payload=b"")  # type: ignore[arg-type]


def test_noise_is_hidden_unless_asked_for() -> None:
    beat, frame, end = Heartbeat(role="server"), AudioFrame(seq=0), CaptureEnd(frames=1, duration_ms=20)
    say = Say(text="hi", index=0)
    assert [shown(_env(m)) for m in (beat, frame, end, say)] == [False, False, True, True]
    assert all(shown(_env(m), show_all=True) for m in (beat, frame, end, say))
    assert shown(_env(beat), prefix="ctl.heartbeat") and shown(_env(frame), prefix="audio.in")
    assert not shown(_env(beat), prefix="ctl.") and not shown(_env(frame), prefix="audio.")


def test_one_session_is_followed() -> None:
    assert shown(_env(Say(session="kitchen", text="a", index=0)), session="kitchen")
    assert not shown(_env(Say(session="hall", text="a", index=0)), session="kitchen")


def _two_lines(bus_address: BusAddress, publish_round: Callable[[BusClient, int], None], **options: Any) -> list[str]:
    """What a real tap prints (two lines) while rounds of messages are published."""
    out = io.StringIO()
    thread = threading.Thread(target=tap, args=(bus_address,), daemon=True,
                              kwargs={"count": 2, "timeout_s": 20.0, "out": out, **options})
    pub = BusClient(bus_address, name="tap-feeder")
    try:
        prove_path(pub, timeout_s=5)
        thread.start()
        deadline = time.monotonic() + 10
        index = 0
        while thread.is_alive() and time.monotonic() < deadline:
            publish_round(pub, index)
            index += 1
            thread.join(0.05)
        thread.join(1)
        assert not thread.is_alive(), f"tap did not print two lines; got {out.getvalue()!r}"
    finally:
        pub.close()
    return out.getvalue().splitlines()


def test_tap_prints_formatted_lines_with_pcm_summarised(bus_address: BusAddress) -> None:
    payload = b"\xab\xcd" * 1600  # 3200 B = 1600 samples = 100 ms at 16 kHz
    lines = _two_lines(bus_address, lambda pub, i: pub.publish(
        AudioChunk(index=i, sample_rate=16000, session="s9", turn=42), payload), prefix="audio.out")
    assert len(lines) == 2
    for line in lines:
        assert "audio.out" in line and "AudioChunk" in line and "s9/42" in line
        assert "payload=<pcm 3200 B, 100 ms>" in line
        assert "\\xab" not in line and "\xab" not in line and "b'" not in line
    first, second = (int(line.split("index=")[1].split()[0]) for line in lines)
    assert second > first


def test_tap_on_a_real_bus_prints_only_what_a_person_wants(bus_address: BusAddress) -> None:
    def noisy_round(pub: BusClient, index: int) -> None:
        pub.publish(Heartbeat(session="kitchen", role="edge"))
        pub.publish(AudioFrame(session="kitchen", seq=index), b"\0\0" * 320)
        pub.publish(Say(session="hall", text="not this one", index=index))
        pub.publish(Say(session="kitchen", text="this one", index=index))

    lines = _two_lines(bus_address, noisy_round, session="kitchen")
    assert len(lines) == 2 and all("Say" in line and "this one" in line and "kitchen/" in line for line in lines)


def test_the_cli_offers_all_and_session() -> None:
    args = build_parser().parse_args(["tap", "--all", "--session", "kitchen", "stt"])
    assert (args.all, args.session, args.prefix) == (True, "kitchen", "stt")
    quiet = build_parser().parse_args(["tap"])
    assert (quiet.all, quiet.session) == (False, "")
