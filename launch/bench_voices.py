"""`rocky-relay bench --suite voices`: the voices side by side, and Rocky's text on Rocky's voice.

1. In process, per embedded voice (joe on Piper, heart on hibari, espeak-ng) with the effect off and on:
   the time from handing a sentence to the backend to its first audio ready to publish, what the tts actor
   adds to a turn; and the effect's own cost on a turn's first slice and on a whole first piece.
2. Through the launched `typed` set: the four combinations the seed project compared, persona.style none/rocky
   x tts.effect none/rocky, as typed turns, release (the text sent) -> first audio handed to the player.
Medians are printed like `rocky-relay bench` prints them; nothing is appended to BENCHMARK.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audio.effects import EFFECTS, make_effect
from launch.bench_table import BENCH_MODELS, model_overrides

SENTENCES = ("Hello friend.", "The ship is ready to go, question?", "I am happy you are here.",
             "We fly to the star tomorrow.", "Amaze amaze amaze!", "Fist my bump.")
VOICES = ("joe", "heart", "espeak")
COMBINATIONS: tuple[tuple[str, str], ...] = tuple((style, effect) for style in ("none", "rocky") for effect in EFFECTS)
FIRST_SLICE_S = 0.2  # as actors/tts.py's FIRST_EFFECT_SLICE_S
TURN_TIMEOUT_S = 180.0


def first_chunk_ms(synthesize: Callable[[str], Any], sample_rate: int, effect: str, text: str) -> float:
    """Text handed to the backend -> the first audio the tts actor would publish, effected as it does."""
    started = time.perf_counter()
    first = next(iter(synthesize(text)))
    make_effect(effect, sample_rate).process(first[: int(FIRST_SLICE_S * sample_rate)])
    return 1000 * (time.perf_counter() - started)


def effect_cost_ms(sample_rate: int, pcm: np.ndarray) -> tuple[float, float]:
    """The rocky effect on a turn's first slice, and on the whole first piece (ms)."""
    timings = []
    for part in (pcm[: int(FIRST_SLICE_S * sample_rate)], pcm):
        effect = make_effect("rocky", sample_rate)
        started = time.perf_counter()
        effect.process(part)
        timings.append(1000 * (time.perf_counter() - started))
    return timings[0], timings[1]


def in_process(reps: int) -> list[str]:
    from actors.tts import TtsSettings, make_synthesizer

    lines = [f"{'voice':8s} {'backend':28s} {'rate':>6s} {'effect':6s} {'n':>3s} {'first chunk p50':>16s} "
             f"{'effect 0.2 s':>13s} {'effect piece':>13s} {'load':>7s}"]
    for voice in VOICES:
        started = time.perf_counter()
        try:
            synth = make_synthesizer(TtsSettings(voice=voice))
        except Exception as exc:  # a voice missing here is reported, the others still measured
            lines.append(f"{voice:8s} unavailable: {type(exc).__name__}: {exc}")
            continue
        load_s = time.perf_counter() - started
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(max(reps, len(SENTENCES)))]
        for effect in EFFECTS:
            firsts = [first_chunk_ms(synth.synthesize, synth.sample_rate, effect, t) for t in texts]
            costs = [effect_cost_ms(synth.sample_rate, next(iter(synth.synthesize(t)))) for t in texts[:reps]]
            slice_ms = statistics.median(c[0] for c in costs) if effect == "rocky" else 0.0
            piece_ms = statistics.median(c[1] for c in costs) if effect == "rocky" else 0.0
            lines.append(f"{voice:8s} {synth.description[:28]:28s} {synth.sample_rate:6d} {effect:6s} "
                         f"{len(firsts):3d} {statistics.median(firsts):13.1f} ms {slice_ms:10.2f} ms "
                         f"{piece_ms:10.2f} ms {load_s:5.1f} s")
    return lines


def through_actors(model: str, reps: int) -> tuple[list[str], int]:
    from launch.answers import load_questions
    from launch.config import bus_address, load_config
    from launch.supervisor import Supervisor
    from launch.turns import TurnDriver

    questions = [q.ask for q in load_questions()][: max(1, reps)]
    results: dict[tuple[str, str], list[float]] = {combo: [] for combo in COMBINATIONS}
    failed = dict.fromkeys(COMBINATIONS, 0)
    workdir = Path(tempfile.mkdtemp(prefix="rocky-bench-voices-"))
    try:
        for style, effect in COMBINATIONS:  # one launch each: the persona and the effect are start-up settings
            (workdir / "bench.toml").write_text(f'[bus]\npub = "ipc://{workdir}/pub"\nsub = "ipc://{workdir}/sub"\n')
            overrides = [*model_overrides(model), "llm.history_tokens=0", f"persona.style={style}",
                         f"tts.effect={effect}", "player.backend=wav", f"player.path={workdir}/reply.wav",
                         f"logger.path={workdir}/turns.jsonl"]
            config = load_config(workdir / "bench.toml", overrides)
            with Supervisor(config, config.sets["typed"], log_dir=workdir / "actors") as supervisor:
                supervisor.start()
                driver = TurnDriver(bus_address(config))
                try:
                    driver.typed_turn("Hello Rocky.", timeout_s=TURN_TIMEOUT_S)  # warm every stage first
                    for question in questions:
                        record = driver.typed_turn(question, timeout_s=TURN_TIMEOUT_S)
                        value = record.get("release_to_first_audio_ms")
                        ok = record.get("status") == "ok" and value is not None
                        print(f"  persona.style {style:5s} effect {effect:5s} {record.get('status')} release->audio "
                              f"{value} ms: {question!r} -> {record.get('spoken_text', '')!r}", flush=True)
                        if ok and value is not None:
                            results[(style, effect)].append(float(value))
                        else:
                            failed[(style, effect)] += 1
                finally:
                    driver.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"{'text':6s} {'voice':6s} {'n':>3s} {'failed':>6s} {'release->first audio p50':>26s}"]
    for (text_style, voice_effect), values in results.items():
        p50 = f"{statistics.median(values):.0f} ms" if values else "-"
        label = "plain" if text_style == "none" else text_style
        lines.append(f"{label:6s} {voice_effect:6s} {len(values):3d} {failed[(text_style, voice_effect)]:6d} "
                     f"{p50:>26s}")
    return lines, sum(failed.values())


def run(args: argparse.Namespace) -> int:
    from launch.bench_bus import machine_description

    reps = max(1, int(args.reps))
    model = BENCH_MODELS[0] if args.model == "all" else args.model
    print(f"bench --suite voices on {machine_description()}, {reps} reps")
    voices = in_process(reps)
    print("\nFirst chunk per voice, in process (text -> first audio the tts actor would publish):")
    print("\n".join(voices), flush=True)
    combos, failed = through_actors(model, reps)
    print("\nFirst chunk per voice, in process (again, beside the turns):", *voices, "",
          f"Typed turns through the actors (model {model}), persona text x voice effect:", *combos, sep="\n")
    return 0 if failed == 0 else 1
