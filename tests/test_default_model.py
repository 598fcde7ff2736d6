"""The default LLM (Qwen2.5-Coder-1.5B-Instruct): its file, its chat-template prompt, right answers; the
bench's answer set; and the CPU plan as each real backend applied it."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.cpu import CORES_ENV, cores_free, plan, threads_for
from actors.llm_backends import LlamaCppGenerator
from actors.llm_prompt import SPOKEN_RULES, Conversation
from actors.llm_settings import LlmSettings
from launch.answers import Question, load_questions, score
from models.manifest import GEMMA_270M, QWEN_1_5B, known_model
from models.registry import llm_model_file, sha256_file


def test_the_default_llm_is_qwen_and_gemma_is_one_line_away() -> None:
    assert known_model("llm", "") is QWEN_1_5B
    assert known_model("llm", "tiny") is GEMMA_270M and known_model("llm", "gemma-3-270m") is GEMMA_270M
    assert "Apache-2.0" in QWEN_1_5B.license and len(QWEN_1_5B.packages) == 22


@pytest.mark.models
def test_default_model_file_matches_the_published_sha256() -> None:
    path = llm_model_file("")
    (ref,) = QWEN_1_5B.files
    assert path.name == ref.name and path.stat().st_size == ref.size == 1_117_320_768
    assert sha256_file(path) == ref.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@pytest.fixture(scope="module")
def qwen() -> LlamaCppGenerator:
    return LlamaCppGenerator(LlmSettings(temperature=0.0, threads=1, prefill_threads=2))


@pytest.mark.models
def test_the_instruct_model_is_prompted_through_its_chat_template(qwen: LlamaCppGenerator) -> None:
    prompt = qwen.render(Conversation("What is two plus two?", (("Hi", "Hello, friend."),)))
    assert qwen.template is not None and "chat template" in qwen.description
    assert prompt.startswith("<|im_start|>system\n") and SPOKEN_RULES in prompt  # a system message, always
    assert "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, friend.<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n")
    assert "User:" not in prompt, "an instruct model gets its template, not the base-model transcript"


@pytest.mark.models
def test_the_default_model_answers_plainly_and_right(qwen: LlamaCppGenerator) -> None:
    for question in load_questions()[:3]:
        reply = "".join(qwen.stream(Conversation(question.ask)))
        assert question.is_right(reply), (question.ask, reply)
        assert "\n" not in reply.strip() and not any(c in reply for c in "*#`"), reply  # sayable, no markdown


@pytest.mark.models
def test_the_thread_plan_reaches_each_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    from actors.stt import SttSettings
    from actors.stt_whisper import WhisperRecognizer
    from actors.tts import PiperSynthesizer, TtsSettings

    monkeypatch.setenv(CORES_ENV, "1")
    assert plan(1) == {"stt": 1, "llm_prefill": 1, "llm": 1, "tts": 1}
    generator = LlamaCppGenerator(LlmSettings(model="gemma-3-270m"))
    assert (llama_cpp.llama_n_threads(generator.llm.ctx), llama_cpp.llama_n_threads_batch(generator.llm.ctx)) == (1, 1)
    options = PiperSynthesizer(TtsSettings()).voice.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    recognizer = WhisperRecognizer(SttSettings())
    assert recognizer.threads == 1 and "1 threads" in recognizer.description
    import os
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # CTranslate2's OpenMP pool sleeps, not spins
    monkeypatch.setenv(CORES_ENV, "2")
    assert threads_for("llm", 3) == 3, "a backend's own setting wins over the plan"
    assert 1 <= cores_free(2) <= 2


def test_cores_override_is_checked() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CORES_ENV, "lots")
        with pytest.raises(ValueError, match=CORES_ENV):
            threads_for("llm")


def test_the_answer_set_loads_and_scores() -> None:
    questions = load_questions()
    assert len(questions) >= 25 and len({q.ask for q in questions}) == len(questions)
    spider = next(q for q in questions if "spider" in q.ask)
    assert spider.is_right("A spider has eight legs.") and spider.is_right("8 legs!")
    assert not spider.is_right("Six or eight legs.") and not spider.is_right("Spiders are arachnids.")
    day = next(q for q in questions if "hours" in q.ask)
    assert day.is_right("There are twenty-four hours in a day.")
    assert score([spider, day], ["eight", "twelve"]) == 1 and score([spider, day], ["eight"]) == 1


def test_each_bench_model_label_selects_embedded_models() -> None:
    """The bench's labels (`gemma-3-270m+tiny.en`: the tiny LLM with the tiny recogniser) become settings
    that name models the manifest knows: none is fetched, none is a typo silently run as a path."""
    from launch.bench_table import BENCH_MODELS, model_overrides
    from launch.config import load_config
    from models.manifest import known_model

    picked = set()
    for label in BENCH_MODELS:
        config = load_config(None, model_overrides(label))
        llm, stt = known_model("llm", config.section("llm").model), known_model("stt", config.section("stt").model)
        assert llm is not None and stt is not None, label
        picked.add((llm.key, stt.key))
    assert len(picked) == len(BENCH_MODELS)


def test_a_malformed_answer_set_is_refused_with_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "q.toml"
    bad.write_text('[[question]]\nask = "Hi?"\naccept = ["hello"]\n\n[[question]]\nask = "Where?"\n')
    with pytest.raises(ValueError, match=r"question 2 \('Where\?'\) needs `accept`"):
        load_questions(bad)
    assert Question("x", ("a",)).is_right("A.")


def test_a_short_window_covers_the_audio_and_its_padding() -> None:
    from actors.stt_whisper import FULL_WINDOW_FRAMES, WINDOW_SPARE_S, max_new_tokens, window_frames

    assert window_frames(3 * 16000) == 100 * (3 + WINDOW_SPARE_S)
    assert window_frames(3 * 16000 + 1) == 100 * (4 + WINDOW_SPARE_S), "part of a second is a whole one"
    assert window_frames(60 * 16000) == FULL_WINDOW_FRAMES, "never more than Whisper's own 30 s"
    assert max_new_tokens(16000) >= 15


@pytest.mark.models
def test_the_short_window_encodes_fewer_frames_and_hears_the_same_words() -> None:
    from actors.stt import SttSettings
    from actors.stt_whisper import FULL_WINDOW_FRAMES, WhisperRecognizer
    from audio.wav import load_pcm16_mono

    sample = Path(__file__).resolve().parent.parent / "launch" / "samples" / "prompt-3s.wav"
    audio = load_pcm16_mono(sample).astype("float32") / 32768.0
    short = WhisperRecognizer(SttSettings())
    text = short.transcribe(audio)
    assert short.model.window_frames < FULL_WINDOW_FRAMES  # what its encode() cut the 30 s window to
    full = WhisperRecognizer(SttSettings(short_window=False))
    assert text == full.transcribe(audio) == "What is the biggest planet in our solar system?"
    assert full.model.window_frames == FULL_WINDOW_FRAMES
