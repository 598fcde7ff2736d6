"""The hibari backend: its bundled af_heart voice through the tts actor, and never a download."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from actors.llm_prompt import words_of
from actors.stt import SttSettings
from actors.stt_whisper import WhisperRecognizer
from actors.tts import TtsActor, TtsSettings, make_synthesizer
from actors.tts_backends import TtsBackendError
from actors.tts_hibari import HibariSynthesizer
from audio.wav import is_silent, resample
from bus.codec import Envelope
from bus.messages import AudioChunk, Say
from models.voices import VoiceNotFound
from tests.helpers import handled_directly

REPLY = "Hello friend. The ship is ready to go."


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[list[str]]:
    """Any attempt of hibari's to fetch a voice fails the test (and its cache is an empty temp folder)."""
    import hibari.voices

    tried: list[str] = []

    def refuse(url: str, *args: object) -> str:
        tried.append(url)
        raise AssertionError(f"hibari tried to download {url}")

    monkeypatch.setenv("HIBARI_HOME", str(tmp_path))
    monkeypatch.setattr(hibari.voices, "download", refuse)
    yield tried
    assert tried == []


def test_the_bundled_voice_speaks_a_reply_through_the_tts_actor_at_24_khz() -> None:
    actor = TtsActor(TtsSettings(voice="heart"))  # the voice brings its backend: tts.backend stays piper
    actor.on_start()
    assert actor.backend().startswith("hibari heart")
    says = [Envelope(topic="say", msg=Say(turn=2, text=text, index=i, last=i == 1))
            for i, text in enumerate(["Hello friend.", "The ship is ready to go."])]
    chunks = [(m, p) for m, p in handled_directly(actor, says) if isinstance(m, AudioChunk)]
    assert {m.sample_rate for m, _ in chunks} == {24000}
    assert [m.clause for m, _ in chunks] == sorted(m.clause for m, _ in chunks) and chunks[-1][0].last
    pcm = np.frombuffer(b"".join(p for _m, p in chunks), dtype=np.int16)
    assert 1.5 < len(pcm) / 24000 < 6 and not is_silent(pcm)
    heard = WhisperRecognizer(SttSettings(threads=1)).transcribe(
        resample(pcm.astype(np.float32) / 32768.0, 24000, 16000))
    assert words_of(heard) == words_of(REPLY)


def test_its_onnxruntime_runs_on_one_thread_without_spinning() -> None:
    options = HibariSynthesizer().engine.sess.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("voice", ["emma", "fenrir", "am_fenrir"])
def test_another_hibari_voice_is_refused_before_anything_could_download_it(voice: str) -> None:
    with pytest.raises(TtsBackendError, match=f"'{voice}'.*only its bundled voice 'heart'.*downloaded"):
        make_synthesizer(TtsSettings(backend="hibari", voice=voice))


def test_a_voice_of_another_backend_is_refused_with_the_backend_it_needs() -> None:
    with pytest.raises(VoiceNotFound, match=r"'joe' is spoken by the piper backend.*tts.backend is 'hibari'"):
        make_synthesizer(TtsSettings(backend="hibari", voice="joe"))
