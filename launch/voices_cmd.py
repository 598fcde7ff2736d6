"""`rocky-relay voices`: the voices Rocky Relay can speak with, and which one the config picks.

One line per voice of the catalogue (models/voices.py): its name (the value of `tts.voice`), the backend
that speaks it, its language, whether it is here, where it comes from and its licence. `--json` gives the
same as one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from models.voices import VOICES, VoiceEntry, VoiceNotFound, backend_for, find_voice


def _state(entry: VoiceEntry) -> str:
    if entry.kind == "server":
        return "needs your server"
    return "installed" if entry.available() else f"missing ({entry.package})"


def configured(args: argparse.Namespace) -> tuple[str, str]:
    """The voice name (or the user's file) the config picks, and its backend (or the reason it is refused)."""
    from launch.config import settings_for
    from launch.models_cmd import load_args_config

    tts = settings_for("tts", load_args_config(args))
    try:
        backend = backend_for(tts.backend, tts.voice)
    except VoiceNotFound as exc:
        return tts.voice, f"refused: {exc}"
    # No voice named: the backend's own (Piper's is joe); a path is a Piper voice of the user's.
    entry = find_voice(tts.voice) if tts.voice else next((v for v in VOICES if v.backend == backend), None)
    return (entry.name if entry else tts.voice or "(the backend's own)"), backend


def cmd_voices(args: argparse.Namespace) -> int:
    chosen, backend = configured(args)
    for entry in VOICES:
        row = {"name": entry.name, "backend": entry.backend, "language": entry.language, "kind": entry.kind,
               "state": _state(entry), "source": entry.source, "license": entry.license,
               "description": entry.description, "configured": entry.name == chosen}
        if args.json:
            print(json.dumps(row))
            continue
        mark = "*" if row["configured"] else " "
        print(f"{mark} {entry.name:11s} {entry.backend:9s} {entry.language:14s} {row['state']:17s} "
              f"{entry.description}\n{'':14s}from: {entry.source}\n{'':14s}licence: {entry.license}")
    if not args.json:
        print(f"\nconfigured: tts.voice -> {chosen} ({backend}); pick one with --set tts.voice=NAME or "
              "[tts] voice = \"NAME\"; tts.effect = \"rocky\" makes any of them speak in chords")
    return 1 if backend.startswith("refused") else 0


def register(subparsers: Any) -> None:
    """Add `voices` to the rocky-relay command."""
    voices = subparsers.add_parser("voices", help="list the voices (name, backend, language, source, licence)")
    voices.add_argument("--json", action="store_true", help="one JSON object per voice")
    voices.set_defaults(func=cmd_voices)
