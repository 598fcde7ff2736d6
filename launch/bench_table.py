"""The bench's printed tables: latency percentiles per scenario, answer scores, ratios, targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.manifest import GEMMA_270M, QWEN_1_5B

FIGURES = ("release_to_first_audio_ms", "stt_ms", "llm_first_token_ms", "persona_ms", "tts_first_chunk_ms",
           "llm_total_ms", "playback_stalled_ms", "interrupt_to_silence_ms", "stale_audio_ms")
HEADLINE = "release_to_first_audio_ms"
TINY_SET = f"{GEMMA_270M.key}+tiny.en"
BENCH_MODELS = (QWEN_1_5B.key, GEMMA_270M.key, TINY_SET)
"""The default model and the tiny one, by the names `llm.model` takes, both with the default recogniser
(whisper base); and the fastest set, the tiny model with the small English-only recogniser (`+` names
`stt.model`): what a user who wants speed above all sets, two lines away."""
Record = dict[str, Any]


def model_parts(label: str) -> tuple[str, str]:
    """A bench model label's `llm.model`, and its `stt.model` after a `+` (empty: the default)."""
    llm, _, stt = label.partition("+")
    return llm, stt


def model_overrides(label: str) -> list[str]:
    """The settings a bench model label stands for."""
    llm, stt = model_parts(label)
    return [f"llm.model={llm}", *([f"stt.model={stt}"] if stt else [])]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _group(records: list[Record], key: Callable[[Record], tuple[str, ...]]) -> dict[tuple[str, ...], list[Record]]:
    groups: dict[tuple[str, ...], list[Record]] = {}
    for rec in records:
        groups.setdefault(key(rec), []).append(rec)
    return groups


def _scenario_key(rec: Record) -> tuple[str, ...]:
    return rec["model"], rec["pipeline"], rec["scenario"]


def latency_table(records: list[Record]) -> list[str]:
    head = ("| model | pipeline | scenario | n ok/all | speculated | reused partial | "
            + " | ".join(f"{f} p50/p95" for f in FIGURES) + " | max release->audio |")
    lines = [head, "|" + "---|" * (7 + len(FIGURES))]
    for (model, pipeline, scenario), recs in sorted(_group(records, _scenario_key).items()):
        good = [r for r in recs if r["status"] in ("ok", "interrupted")]
        cells = []
        for figure in FIGURES:
            values = [r[figure] for r in good if r.get(figure) is not None]
            cells.append(f"{percentile(values, .5):.0f} / {percentile(values, .95):.0f}" if values else "-")
        spec = sum(1 for r in good if r.get("llm_speculated"))
        reused = sum(1 for r in good if r.get("stt_reused_partial"))
        worst = max((r[HEADLINE] for r in good if r.get(HEADLINE) is not None), default=None)
        lines.append(f"| {model} | {pipeline} | {scenario} | {len(good)}/{len(recs)} | {spec} | {reused} | "
                     + " | ".join(cells) + f" | {worst if worst is not None else '-'} |")
    return lines


def scores(records: list[Record]) -> list[str]:
    """`right x/N` per model and input kind, over the turns that asked the whole answer set."""
    lines = []
    scored = [r for r in records if r.get("right") is not None]
    for (model, scenario), recs in sorted(_group(scored, lambda r: (r["model"], r["scenario"])).items()):
        right = sum(1 for r in recs if r["right"])
        lines.append(f"{model:14s} {scenario:22s} right {right}/{len(recs)}")
    return lines


def headline(records: list[Record], model: str, pipeline: str, scenario: str) -> list[float]:
    return [r[HEADLINE] for r in records if (r["model"], r["pipeline"], r["scenario"]) == (model, pipeline, scenario)
            and r["status"] == "ok" and r.get(HEADLINE) is not None]


def ratios(records: list[Record], quiet: str, busy: str, sequential: str) -> list[str]:
    """Streaming vs the sequential flow, and the busy machine vs the quiet one, same run, same model (p50s
    by the same nearest-rank percentile as the table, so the ratio's figures are the table's)."""
    lines = []
    for model in sorted({r["model"] for r in records}):
        calm = headline(records, model, "streaming", quiet)
        seq = headline(records, model, "sequential", sequential)
        inproc = headline(records, model, "in-process", sequential)
        if calm and inproc:
            s, q = percentile(calm, .5), percentile(inproc, .5)
            lines.append(f"{model:14s} streaming {quiet} p50 {s:.0f} ms / three models in a row in one process "
                         f"p50 {q:.0f} ms = {s / q:.2f}")
        loaded = headline(records, model, "streaming", busy)
        if calm and seq:
            s, q = percentile(calm, .5), percentile(seq, .5)
            lines.append(f"{model:14s} streaming {quiet} p50 {s:.0f} ms / sequential {sequential} p50 {q:.0f} ms"
                         f" = {s / q:.2f}")
        if calm and loaded:
            p_calm, p_busy = percentile(calm, .95), percentile(loaded, .95)
            over = sum(1 for v in loaded if v > 2000)
            lines.append(f"{model:14s} {busy} p95 {p_busy:.0f} ms / quiet p95 {p_calm:.0f} ms = {p_busy / p_calm:.2f};"
                         f" turns over 2 s: {over}/{len(loaded)}")
    return lines
