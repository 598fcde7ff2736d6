"""VAD ends an utterance on loudness as well as on webrtcvad's word, so the settled partial starts in time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actors.vad import VadActor, VadSettings
from audio.wav import SILENCE_DBFS, load_pcm16_mono, rms_dbfs
from bus.codec import Envelope
from bus.messages import AudioFrame, VadEvent
from tests.helpers import handled_directly

SAMPLES = Path(__file__).resolve().parents[1] / "launch" / "samples"
TURN = 1_700_000_000_000


def _in_a_room(noise_dbfs: float) -> np.ndarray:
    """The sample's speech, then a second of room noise at `noise_dbfs`, noise throughout."""
    speech = load_pcm16_mono(SAMPLES / "prompt-3s.wav").astype(np.float64)
    audio = np.concatenate([speech, np.zeros(16000)])
    audio += np.random.default_rng(7).normal(0.0, 32768 * 10 ** (noise_dbfs / 20), audio.size)
    noisy: np.ndarray = np.clip(audio, -32768, 32767).astype(np.int16)
    return noisy


def _events(pcm: np.ndarray, settings: VadSettings) -> list[VadEvent]:
    """What the actor publishes for `pcm` in 20 ms frames (its handler called directly: no bus needed)."""
    actor = VadActor(settings)
    actor.on_start()
    step = 320
    frames = [Envelope(topic="audio.in", msg=AudioFrame(turn=TURN, seq=i),
                       payload=pcm[i * step:(i + 1) * step].tobytes()) for i in range(len(pcm) // step)]
    return [msg for msg, _payload in handled_directly(actor, frames) if isinstance(msg, VadEvent)]


def _stop_ms(pcm: np.ndarray, settings: VadSettings) -> float:
    """Where the utterance's last stop was placed, in the turn's audio."""
    events = _events(pcm, settings)
    assert events and not events[-1].speech, events
    return events[-1].audio_ms


def test_a_quiet_room_ends_the_utterance_sooner_than_webrtcvad_alone() -> None:
    pcm = _in_a_room(-60.0)
    by_loudness = _stop_ms(pcm, VadSettings(quiet_below_peak_db=40))
    webrtc_only = _stop_ms(pcm, VadSettings(quiet_below_peak_db=0))
    assert by_loudness < webrtc_only


def test_a_noisy_room_leaves_the_decision_to_webrtcvad() -> None:
    # Noise 30 dB under the voice: no frame is 40 dB below the loudest, so loudness never decides.
    pcm = _in_a_room(-40.0)
    def changes(settings: VadSettings) -> list[tuple[bool, float]]:
        return [(e.speech, e.audio_ms) for e in _events(pcm, settings)]

    assert changes(VadSettings(quiet_below_peak_db=40)) == changes(VadSettings(quiet_below_peak_db=0))


def test_frame_level_is_measured_in_dbfs() -> None:
    assert round(rms_dbfs(np.full(320, 32767, dtype=np.int16))) == 0
    assert rms_dbfs(np.zeros(320, dtype=np.int16)) == SILENCE_DBFS == -200.0
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DBFS
