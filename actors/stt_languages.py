"""Which language a turn was spoken in, for `stt.language = "auto"` with a multilingual Whisper (base).

Whisper's own guess ranges over its 99 languages, and on a short, synthetic or accented question it often
lands on a neighbour (espeak-ng's French came back as Latin). Choosing the likeliest among the languages the
setting lists (`stt.languages`, by default those the voices here can answer in) keeps the guess among the
answers Rocky can give. Detection costs one more encoder pass per transcription, and only in auto mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

AUTO = "auto"


def allowed_languages(languages: str) -> set[str]:
    """The comma list of `stt.languages` as codes; empty: any language Whisper knows."""
    return {code.strip().lower() for code in languages.split(",") if code.strip()}


def check_language_setting(model: Any, language: str, model_name: str, languages: str = "") -> None:
    """Refuse at start what would fail every turn: a code Whisper does not know, or auto with an English-only
    model (which cannot say which language it heard), naming the fix."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # type: ignore[import-untyped]

    unknown = sorted((({language} - {AUTO, ""}) | allowed_languages(languages)) - set(_LANGUAGE_CODES))
    if unknown:
        raise ValueError(f"stt.language/stt.languages: {', '.join(map(repr, unknown))} is not a language Whisper "
                         "knows: use ISO 639-1 codes such as en, fr, es (or auto for stt.language)")
    if language == AUTO and not model.model.is_multilingual:
        raise ValueError(f"stt.language = \"auto\" needs a multilingual model, and {model_name} "
                         "knows only English: set stt.model = \"base\" (the default; rocky-relay models "
                         "prepare assembles it) or stt.language = \"en\"")


def heard_language(model: Any, audio: np.ndarray, languages: str) -> str:
    """The likeliest language of `audio` among `languages` (faster-whisper's `detect_language`)."""
    best, _probability, ranked = model.detect_language(audio=audio)
    allowed = allowed_languages(languages)
    among = [(code, p) for code, p in ranked if not allowed or code in allowed]
    return str(max(among, key=lambda pair: pair[1])[0]) if among else str(best)
