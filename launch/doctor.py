"""`rocky-relay doctor`: checks what a turn needs on this machine and says how to fix each problem.

Sections: python, audio devices, models (sizes; --full adds sha256), bus
addresses and ports, keys, CPU features for the llama.cpp build, llama_cpp,
free disk. Each finding is OK, WARN or FAIL with a one-line fix; the exit code
is 1 when anything FAILs. WARN is for what only some uses need (live audio on
a server, say), FAIL for what breaks the configured setup. The bus and keys checks are in
launch/doctor_bus.py.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.llm_settings import LlmSettings
from actors.logger_settings import LoggerSettings
from launch.models_cmd import load_args_config
from models.manage import check, resolve
from models.registry import model_cache_dir

if TYPE_CHECKING:
    from launch.config import Config

LLAMA_BUILD_FLAGS = ("avx", "avx2", "fma", "f16c")
"""What setup.sh builds llama.cpp with (-DGGML_NATIVE=OFF plus these): a CPU without one crashes in it."""
REBUILD = ("CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF' .venv/bin/pip install "
           "--no-cache-dir --no-deps --force-reinstall llama-cpp-python=={version}")
# llama.cpp's system-info names -> /proc/cpuinfo flags, for the features a wheel was built to use.
LLAMA_INFO_FLAGS = {"SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c",
                    "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VNNI": "avx512_vnni", "AVX_VNNI": "avx_vnni"}
LOW_DISK_BYTES = 1_000_000_000


@dataclass
class Finding:
    section: str
    status: str
    """ok, warn or fail."""
    text: str
    fix: str = ""


def check_python() -> list[Finding]:
    # Older than 3.11 cannot get here (tomllib, and pip refuses the install), so this only reports.
    version = ".".join(map(str, sys.version_info[:3]))
    return [Finding("python", "ok", f"Python {version} ({sys.executable})")]


def check_audio(config: Config) -> list[Finding]:
    live = "live talk needs it; WAV in/out works without: talk --input q.wav --output reply.wav"
    try:
        import sounddevice
    except ImportError:
        return [Finding("audio", "warn", f"sounddevice is not installed ({live})", "pip install -e '.[edge]'")]
    except OSError as exc:  # the module imports PortAudio's shared library at import time
        return [Finding("audio", "warn", f"PortAudio library missing: {exc} ({live})",
                        "sudo apt install libportaudio2 (macOS: brew install portaudio)")]
    devices = list(sounddevice.query_devices())
    if not devices:
        return [Finding("audio", "warn", f"no audio devices at all ({live})",
                        "start PulseAudio/PipeWire (pactl info) and install libasound2-plugins; headless: "
                        "pulseaudio -D with a null sink, then --set mic.device=pulse --set player.device=pulse")]
    findings = []
    for kind, section in (("input", "mic"), ("output", "player")):
        channels = f"max_{kind}_channels"
        wanted = str(config.section(section).device)
        names = ", ".join(repr(d["name"]) for d in devices if d[channels] > 0) or "none"
        try:
            info = sounddevice.query_devices(int(wanted) if wanted.isdigit() else wanted or None, kind=kind)
            findings.append(Finding("audio", "ok", f"{kind}: {info['name']!r}"
                                    f"{' (system default)' if not wanted else ''}; {kind}s: {names}"))
        except (ValueError, sounddevice.PortAudioError) as exc:
            status = "fail" if wanted and config.section(section).backend == "sounddevice" else "warn"
            findings.append(Finding("audio", status, f"{kind} {wanted or 'default'}: {exc}; {kind}s: {names}",
                                    f"--set {section}.device=NAME with one of the {kind}s listed (or check "
                                    "PulseAudio: pactl info)"))
    return findings


def check_models(config: Config, full: bool) -> list[Finding]:
    outcomes = [(entry, check(entry, full=full)) for entry in resolve(config)]
    return [Finding("models", out.status, f"{entry.label}: {out.text}", out.fix) for entry, out in outcomes]


def cpu_flags() -> set[str] | None:
    try:
        line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return None
    return set(line.partition(":")[2].split())


def _llama_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "0.3.36"  # what setup.sh pins


def check_cpu(flags: set[str] | None) -> list[Finding]:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i686", "i386"):
        return [Finding("cpu", "ok", f"{machine}: setup.sh builds llama.cpp natively here (x86 flags only on x86)")]
    if flags is None:
        return [Finding("cpu", "warn", "cannot read /proc/cpuinfo to check avx/avx2/fma/f16c",
                        "if llama crashes with an illegal instruction: " + REBUILD.format(version=_llama_version()))]
    missing = [f for f in LLAMA_BUILD_FLAGS if f not in flags]
    if missing:
        return [Finding("cpu", "fail", f"CPU lacks {', '.join(missing)}: the llama.cpp build of setup.sh "
                        "(GGML_NATIVE=OFF with AVX2/FMA/F16C) dies with an illegal instruction",
                        "rebuild without them: " + REBUILD.format(version=_llama_version()))]
    extra = " (avx512f too: kept off on purpose, a native build crashed on such CPUs)" if "avx512f" in flags else ""
    return [Finding("cpu", "ok", f"{' '.join(LLAMA_BUILD_FLAGS)} present{extra}")]


def check_llama(config: Config, flags: set[str] | None) -> list[Finding]:
    needed = config.of(LlmSettings).backend == "llama-cpp"
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:
        why = "" if needed else f" (not needed: llm.backend={config.of(LlmSettings).backend})"
        return [Finding("llama", "fail" if needed else "ok", f"llama_cpp not importable: {exc}{why}",
                        "./setup.sh (builds llama-cpp-python once with safe CPU flags)")]
    info = llama_cpp.llama_print_system_info()
    info = info.decode() if isinstance(info, bytes) else str(info)
    built = {name.strip() for name, _, on in (p.partition("=") for p in info.split("|")) if on.strip() == "1"}
    lacking = sorted(n for n in built if n in LLAMA_INFO_FLAGS and flags is not None
                     and LLAMA_INFO_FLAGS[n] not in flags)
    if lacking:
        return [Finding("llama", "fail", f"llama_cpp {llama_cpp.__version__} was built for {', '.join(lacking)}, "
                        "which this CPU lacks", "rebuild it: " + REBUILD.format(version=_llama_version()))]
    return [Finding("llama", "ok", f"llama_cpp {llama_cpp.__version__} imports; built with "
                    f"{', '.join(sorted(n for n in built if n in LLAMA_INFO_FLAGS)) or 'no x86 extensions'}")]


def check_disk(config: Config) -> list[Finding]:
    findings = []
    for what, path in (("logs", Path(config.of(LoggerSettings).path).parent), ("model cache", model_cache_dir())):
        existing = path.resolve()
        while not existing.exists():  # not created yet: the disk it will land on
            existing = existing.parent
        usage = shutil.disk_usage(existing)
        text = f"{what} {path}: {usage.free / 1e9:.1f} GB free"
        if usage.free < LOW_DISK_BYTES:
            fix = ("free some space (the models take ~0.6 GB; logs grow per turn)" if what == "logs" else
                   "free some space or set ROCKY_RELAY_MODEL_CACHE to a disk with room")
            findings.append(Finding("disk", "warn", text + " (under 1 GB)", fix))
        else:
            findings.append(Finding("disk", "ok", text))
    return findings


def run_checks(config: Config, full: bool = False) -> list[Finding]:
    from launch.doctor_bus import check_bus, check_keys  # here: that module uses this one's Finding

    flags = cpu_flags()
    return [*check_python(), *check_audio(config), *check_models(config, full), *check_bus(config),
            *check_keys(config), *check_cpu(flags), *check_llama(config, flags), *check_disk(config)]


def report(findings: Iterable[Finding]) -> int:
    findings = list(findings)
    section = ""
    for finding in findings:
        if finding.section != section:
            section = finding.section
            print(f"[{section}]")
        print(f"  {finding.status.upper():5s} {finding.text}")
        if finding.fix and finding.status != "ok":
            print(f"        fix: {finding.fix}")
    counts = {s: sum(f.status == s for f in findings) for s in ("ok", "warn", "fail")}
    print(f"doctor: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if counts["fail"] else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from launch.config import ConfigError

    try:
        config = load_args_config(args)
    except ConfigError as exc:
        return report([Finding("config", "fail", str(exc), "fix the config file, --set or ROCKY_RELAY_BUS")])
    return report(run_checks(config, full=args.full))


def register(subparsers: Any) -> None:
    """Add `doctor` to the rocky-relay command."""
    doctor = subparsers.add_parser("doctor", help="check audio, models, bus, keys, CPU and disk; say how to fix")
    doctor.add_argument("--full", action="store_true", help="also sha256 every model file (a few seconds)")
    doctor.set_defaults(func=cmd_doctor)
