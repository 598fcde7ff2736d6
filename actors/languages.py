"""Languages Rocky can hear and answer in: their names, and which offline voice speaks each.

A multilingual recogniser (faster-whisper base) says which language it heard. The llm actor answers in that
language when a voice for it is at hand, and says honestly that it only speaks English when none is (or
when only an English recogniser listened). Piper and the other English voices stay for English; espeak-ng,
a Debian package that speaks dozens of languages with no model files, voices the rest.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

ENGLISH = "en"
NAMES: dict[str, str] = {
    "en": "English", "fr": "French", "es": "Spanish", "de": "German", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "pl": "Polish", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "cs": "Czech",
    "ro": "Romanian", "hu": "Hungarian", "el": "Greek", "tr": "Turkish", "ca": "Catalan", "ru": "Russian",
    "uk": "Ukrainian", "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi",
}
"""ISO 639-1 code -> name, for the prompt ("answer in French") and for people reading records."""
ESPEAK_VOICES: dict[str, str] = {"fr": "fr-fr", "es": "es", "pt": "pt", "zh": "cmn"}
"""Where espeak-ng's voice for a language is not named by its code alone."""
ONLY_ENGLISH = "Sorry, I only speak English."
"""The honest answer to a language no voice here can speak."""


def name_of(language: str) -> str:
    """The language's name in English; the code itself when it is not one of NAMES."""
    return NAMES.get(language, language)


def is_english(language: str) -> bool:
    """Empty (typed, or a recogniser that does not say) counts as English: the persona's own language."""
    return not language or language == ENGLISH or language.startswith(f"{ENGLISH}-")


@functools.lru_cache(maxsize=8)
def espeak_voices(command: str = "espeak-ng") -> frozenset[str]:
    """The voice names espeak-ng has here; empty when it is not installed or does not answer."""
    program = shutil.which(command)
    if program is None:
        return frozenset()
    try:
        listing = subprocess.run([program, "--voices"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1)


def espeak_voice_for(language: str, command: str = "espeak-ng") -> str:
    """espeak-ng's voice for `language`, or empty when it has none (or is not installed)."""
    voices = espeak_voices(command)
    voice = ESPEAK_VOICES.get(language, language)
    return voice if voice in voices else ""


def answer_language(heard: str, command: str = "espeak-ng") -> tuple[str, bool]:
    """(the language to ask the model for by name, empty for English; whether it can be answered at all:
    False when no voice here speaks what was heard)."""
    if is_english(heard):
        return "", True
    if espeak_voice_for(heard, command):
        return name_of(heard), True
    return "", False


def reply_language(heard: str, command: str = "espeak-ng") -> str:
    """The code a reply to `heard` is spoken in when it is not English: empty for English, and for a language
    no voice speaks (that reply is the English ONLY_ENGLISH)."""
    return "" if is_english(heard) or not espeak_voice_for(heard, command) else heard
