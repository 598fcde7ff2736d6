"""Bad audio in: every awkward recording is converted, resampled, downmixed or refused with its reason.

Each input is made here (numpy + struct) from the bundled spoken question, run through
`load_pcm16_mono` (what `talk --input` and the mic use), then the hard ones through the mic and
stt actors on a real bus, and the 24-bit one through the real default Whisper model to prove the words
survive the conversion.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from actors.mic import MicActor, MicSettings
from actors.stt import FixedRecognizer, SttActor, SttSettings
from audio.wav import (
    CLIPPED_WARN_FRACTION,
    WavError,
    clipped_fraction,
    is_silent,
    load_pcm16_mono,
    read_wav,
    resample,
)
from bus.handshake import prove_path, wait_for_actors
from bus.messages import AudioFrame, ButtonEvent, Message, Transcript, TurnError
from bus.sockets import BusAddress, BusClient
from tests.helpers import ActorThread
from tests.test_wav import fmt_wav, sine, write_raw

PROMPT = Path(__file__).resolve().parents[1] / "launch" / "samples" / "prompt-3s.wav"
TURN = 1_700_000_000_000


def speech(rate: int = 16000) -> npt.NDArray[np.float64]:
    """The bundled question ("What is the biggest planet in our solar system?") as floats at `rate`."""
    return resample(load_pcm16_mono(PROMPT).astype(np.float64) / 32768.0, 16000, rate).astype(np.float64)


def ints(x: npt.NDArray[np.float64], width: int) -> bytes:
    """Little-endian signed PCM of `width` bytes (3 is packed 24-bit), full scale at |x| = 1."""
    full = 2.0 ** (8 * width - 1)
    v = np.clip(np.round(x * full), -full, full - 1).astype(np.int64)
    if width == 3:
        return v.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return v.astype(f"<i{width}").tobytes()


def stereo(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Two channels whose mean is `x` (they differ, so a downmix that took one channel would show)."""
    wobble = 0.05 * np.sin(np.arange(len(x)) / 7.0)
    return np.column_stack([x + wobble, x - wobble]).ravel()


def extensible_wav(path: Path, data: bytes, sub_tag: int, width: int, valid_bits: int, rate: int = 16000,
                   channels: int = 1) -> Path:
    guid = struct.pack("<H", sub_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    extra = struct.pack("<HHI", 22, valid_bits, 0x4 if channels == 1 else 0x3) + guid
    return fmt_wav(path, 0xFFFE, channels, rate, width, 8 * width, data, extra)


def test_float64_and_int32_decode(tmp_path: Path) -> None:
    f64 = fmt_wav(tmp_path / "f64.wav", 3, 1, 16000, 8, 64, np.array([0.5, -0.5]).astype("<f8").tobytes())
    np.testing.assert_allclose(read_wav(f64)[0], [0.5, -0.5])
    raw = np.array([2**30, -(2**31), 2**31 - 1], dtype="<i4").tobytes()
    i32 = write_raw(tmp_path / "i32.wav", raw, 16000, width=4)
    np.testing.assert_array_equal(load_pcm16_mono(i32), [16384, -32768, 32767])


@pytest.mark.parametrize(("sub_tag", "width", "valid_bits"), [(1, 3, 24), (1, 4, 24), (1, 2, 16), (3, 4, 32)])
def test_extensible_headers_decode(tmp_path: Path, sub_tag: int, width: int, valid_bits: int) -> None:
    want = np.array([0.0, 0.5, -0.5, 0.25], dtype=np.float64)
    if sub_tag == 3:
        data = want.astype("<f4").tobytes()
    elif width == 3:
        data = b"".join(int(v * 2**23).to_bytes(3, "little", signed=True) for v in want)
    else:  # valid bits are left-justified in the container
        data = (want * 2.0 ** (8 * width - 1)).astype(f"<i{width}").tobytes()
    stereo = np.repeat(np.frombuffer(data, np.uint8).reshape(-1, width), 2, axis=0).tobytes()
    path = extensible_wav(tmp_path / "x.wav", stereo, sub_tag, width, valid_bits, channels=2)
    audio, rate = read_wav(path)
    assert rate == 16000
    np.testing.assert_allclose(audio, want, atol=1e-6)


def test_extensible_with_unknown_sub_format_is_refused(tmp_path: Path) -> None:
    extra = struct.pack("<HHI", 22, 16, 4) + b"\x01\x00" + b"\x99" * 14
    path = fmt_wav(tmp_path / "odd.wav", 0xFFFE, 1, 16000, 2, 16, b"\0" * 20, extra)
    with pytest.raises(WavError, match="unknown sub-format"):
        read_wav(path)


def test_chunks_before_fmt_and_data_are_skipped(tmp_path: Path) -> None:
    pcm = sine(16000)
    plain = write_raw(tmp_path / "p.wav", pcm.tobytes(), 16000).read_bytes()
    odd_chunk = b"LIST" + struct.pack("<I", 3) + b"abc\0"  # odd size: padded to even
    path = tmp_path / "list.wav"
    path.write_bytes(plain[:12] + odd_chunk + plain[12:])
    np.testing.assert_array_equal(load_pcm16_mono(path), pcm)


def test_streamed_data_size_reads_to_the_end(tmp_path: Path) -> None:
    pcm = sine(16000)
    raw = bytearray(write_raw(tmp_path / "p.wav", pcm.tobytes(), 16000).read_bytes())
    raw[40:44] = struct.pack("<I", 0xFFFFFFFF)  # what a writer that cannot seek leaves behind
    (tmp_path / "stream.wav").write_bytes(bytes(raw))
    np.testing.assert_array_equal(load_pcm16_mono(tmp_path / "stream.wav"), pcm)


def test_clipped_fraction() -> None:
    assert clipped_fraction(np.zeros(0, dtype=np.int16)) == 0.0
    assert clipped_fraction(sine(16000)) == 0.0
    loud = np.clip(sine(16000, amp=1.0).astype(np.int32) * 3, -32768, 32767).astype(np.int16)
    assert clipped_fraction(loud) > 0.5 > CLIPPED_WARN_FRACTION
    assert clipped_fraction(np.array([1.0, -1.0, 0.0, 0.5], dtype=np.float32)) == 0.5




def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def sparse(path: Path, data_bytes: int) -> Path:
    """Grow a header-only WAV to `data_bytes` of silence without writing them (a sparse file)."""
    with path.open("r+b") as f:
        f.seek(40)
        f.write(struct.pack("<I", data_bytes))
        f.truncate(44 + data_bytes)
    return path


def _make(tmp: Path, name: str) -> Path:
    """One bad input, made from the spoken question where it has audio."""
    p = tmp / f"{name.replace(' ', '_')}.wav"
    s16 = speech()
    makers: dict[str, Callable[[], Path]] = {
        "empty": lambda: write_raw(p, b"", 16000),
        "header only": lambda: put(p, write_raw(tmp / "full.wav", ints(s16, 2), 16000).read_bytes()[:44]),
        "silent": lambda: write_raw(p, bytes(32000), 16000),
        "clipped": lambda: write_raw(p, ints(np.clip(s16 * 8, -1, 1), 2), 16000),
        "8 kHz": lambda: write_raw(p, ints(speech(8000), 2), 8000),
        "48 kHz": lambda: write_raw(p, ints(speech(48000), 2), 48000),
        "stereo 44.1 kHz": lambda: write_raw(p, ints(stereo(speech(44100)), 2), 44100, channels=2),
        "8-bit": lambda: write_raw(p, (np.round(s16 * 127) + 128).astype(np.uint8).tobytes(), 16000, width=1),
        "24-bit": lambda: write_raw(p, ints(s16, 3), 16000, width=3),
        "24-bit extensible": lambda: extensible_wav(p, ints(s16, 3), 1, 3, 24),
        "24-in-32 extensible 48 kHz stereo": lambda: extensible_wav(p, ints(stereo(speech(48000)), 4), 1, 4, 24,
                                                                    48000, 2),
        "32-bit int": lambda: write_raw(p, ints(s16, 4), 16000, width=4),
        "32-bit float": lambda: fmt_wav(p, 3, 1, 16000, 4, 32, s16.astype("<f4").tobytes()),
        "float extensible": lambda: extensible_wav(p, s16.astype("<f4").tobytes(), 3, 4, 32),
        "float with NaN": lambda: fmt_wav(p, 3, 1, 16000, 4, 32, np.array([0.1, np.nan], "<f4").tobytes()),
        "2 kHz": lambda: write_raw(p, ints(s16[:4000], 2), 2000),
        "mu-law": lambda: fmt_wav(p, 7, 1, 8000, 1, 8, b"\xff" * 8000),
        "MP3 bytes": lambda: put(p, b"ID3\x04\x00" + bytes(range(256)) * 8),
        "text": lambda: put(p, b"What is the biggest planet?\n"),
        "truncated RIFF": lambda: put(p, b"RIFF\x24\x00"),
        "70 MiB of audio": lambda: sparse(fmt_wav(p, 1, 1, 16000, 2, 16, b""), 70 << 20),
    }
    return makers[name]()


ACCEPTED = ["8 kHz", "48 kHz", "stereo 44.1 kHz", "8-bit", "24-bit", "24-bit extensible",
            "24-in-32 extensible 48 kHz stereo", "32-bit int", "32-bit float", "float extensible"]
REFUSED = {"empty": "no audio frames", "header only": "no audio frames", "float with NaN": "NaN",
           "2 kHz": "sample rate 2000", "mu-law": "compressed WAV (mu-law)", "MP3 bytes": "not a WAV file",
           "text": "not a WAV file", "truncated RIFF": "header is truncated", "70 MiB of audio": "more than 64 MiB"}


@pytest.mark.parametrize("name", ACCEPTED)
def test_converted_inputs_keep_the_speech(tmp_path: Path, name: str) -> None:
    out = load_pcm16_mono(_make(tmp_path, name))
    ref = load_pcm16_mono(PROMPT).astype(np.float64)
    assert out.dtype == np.int16 and abs(len(out) - len(ref)) <= 2
    # The same waveform, not just the same length: 8-bit and 8 kHz lose detail, never the shape.
    n = min(len(out), len(ref))
    assert np.corrcoef(out[:n].astype(np.float64), ref[:n])[0, 1] > (0.9 if name in ("8 kHz", "8-bit") else 0.99)
    assert clipped_fraction(out) <= CLIPPED_WARN_FRACTION


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unusable_inputs_are_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    path = _make(tmp_path, name)
    with pytest.raises(WavError) as info:
        load_pcm16_mono(path)
    assert path.name in str(info.value) and REFUSED[name] in str(info.value)


def test_silent_and_clipped_inputs_are_accepted_but_flagged(tmp_path: Path) -> None:
    silent = load_pcm16_mono(_make(tmp_path, "silent"))
    assert len(silent) == 16000 and is_silent(silent)  # stt ends the turn with "no speech heard"
    clipped = load_pcm16_mono(_make(tmp_path, "clipped"))
    assert clipped_fraction(clipped) > CLIPPED_WARN_FRACTION  # the mic logs input_clipped
    assert not is_silent(clipped)


def _wait(client: BusClient, match: Callable[[Message], bool], timeout_s: float = 15.0) -> Message:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.recv(timeout_ms=100)
        if env is not None and match(env.msg):
            return env.msg
    raise AssertionError("the awaited message never came")


@pytest.mark.parametrize(("name", "outcome"), [
    ("24-bit extensible", "hello rocky"), ("24-in-32 extensible 48 kHz stereo", "hello rocky"),
    ("clipped", "hello rocky"), ("silent", "stt: no speech heard"), ("text", "mic: microphone: "),
])
def test_mic_and_stt_on_the_bus(bus_address: BusAddress, tmp_path: Path, name: str, outcome: str) -> None:
    """The mic (WAV source) and stt (fixed recogniser) actors take each input through a real turn."""
    path = _make(tmp_path, name)
    mic = MicActor(MicSettings(backend="wav", path=str(path), realtime=False))
    stt = SttActor(SttSettings(backend="fixed"), FixedRecognizer("hello rocky"))
    driver = BusClient(bus_address, ("audio.in", "stt.final", "turn.error"), name="driver")
    try:
        with ActorThread(mic, bus_address), ActorThread(stt, bus_address):
            prove_path(driver)
            wait_for_actors(driver, {"mic", "stt"}, timeout_s=15)
            driver.publish(ButtonEvent(turn=TURN, pressed=True))
            # Release once the whole file is out, as `talk --input` does; a refused file ends the turn first.
            end = _wait(driver, lambda m: isinstance(m, TurnError) or (isinstance(m, AudioFrame) and m.source_end))
            if isinstance(end, AudioFrame):
                driver.publish(ButtonEvent(turn=TURN, pressed=False))
                end = _wait(driver, lambda m: isinstance(m, (Transcript, TurnError)))
    finally:
        driver.close()
    if isinstance(end, Transcript):
        assert end.text == outcome and abs(end.audio_ms - 1000 * len(speech()) / 16000) <= 40
    else:
        assert isinstance(end, TurnError) and f"{end.stage}: {end.reason}".startswith(outcome)
        assert name != "text" or (path.name in end.reason and "not a WAV file" in end.reason)


@pytest.mark.models
def test_the_real_model_hears_the_question_through_24_bit_conversions(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper")
    from actors.stt_whisper import WhisperRecognizer
    from models.registry import ModelNotFound

    try:
        recognizer = WhisperRecognizer(SttSettings())
    except ModelNotFound as exc:
        pytest.skip(str(exc))
    for name in ("24-bit extensible", "24-in-32 extensible 48 kHz stereo"):
        text = recognizer.transcribe(load_pcm16_mono(_make(tmp_path, name)).astype(np.float32) / 32768.0)
        assert "biggest planet" in text.lower() and "solar system" in text.lower(), f"{name}: {text!r}"
