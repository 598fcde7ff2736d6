"""TTS never puts more than MAX_CHUNK_BYTES of audio in one chunk, and loses nothing by splitting."""

from __future__ import annotations

from actors.tts import MAX_CHUNK_BYTES, ToneSynthesizer, TtsActor, TtsSettings
from bus.codec import Envelope
from bus.messages import AudioChunk, Say
from tests.helpers import handled_directly


def _chunks(settings: TtsSettings, text: str) -> list[tuple[AudioChunk, bytes]]:
    """What the actor publishes for one last clause (its handler called directly: no bus needed)."""
    actor = TtsActor(settings, ToneSynthesizer(settings.sample_rate))
    said = Envelope(topic="say", msg=Say(turn=5, text=text, index=0, last=True))
    return [(msg, payload) for msg, payload in handled_directly(actor, [said]) if isinstance(msg, AudioChunk)]


def test_a_long_sequential_reply_goes_out_in_capped_chunks_in_order() -> None:
    text = "word " * 300  # ~48 s of beeps at 16 kHz: ~1.5 MB as one piece
    whole = b"".join(pcm.tobytes() for pcm in ToneSynthesizer(16000).synthesize(text))
    chunks = _chunks(TtsSettings(backend="tone", sample_rate=16000, streaming=False), text)
    assert len(whole) > 4 * MAX_CHUNK_BYTES
    assert all(len(payload) <= MAX_CHUNK_BYTES for _msg, payload in chunks)
    assert b"".join(payload for _msg, payload in chunks) == whole
    assert [msg.index for msg, _ in chunks] == list(range(len(chunks)))
    assert [msg.last for msg, _ in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {msg.clause for msg, _ in chunks} == {0}


def test_a_short_clause_is_one_chunk_and_an_end_marker() -> None:
    chunks = _chunks(TtsSettings(backend="tone", sample_rate=16000), "hello")
    assert [(len(payload) > 0, msg.last) for msg, payload in chunks] == [(True, False), (False, True)]
