"""The bench's measurements of the bus itself and of the actor system's overhead."""

from __future__ import annotations

import multiprocessing
import os
import platform
import socket
import statistics
import time
from typing import Any

from bus.messages import Ping
from bus.sockets import BusAddress, BusClient

HOP_MESSAGES = 3000


def machine_description() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        model = platform.processor() or model
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _subscriber(address: BusAddress, count: int, ready: Any, results: Any) -> None:
    client = BusClient(address, ("ctl.ping",), name="hop-sub")
    delays: list[float] = []
    ready.set()
    try:
        while len(delays) < count:
            env = client.recv(timeout_ms=5000)
            if env is None:
                break
            if isinstance(env.msg, Ping) and env.msg.nonce >= 0:
                delays.append((time.time() - env.msg.ts) * 1e6)
    finally:
        client.close()
        results.send(delays)


def bus_hop_us(count: int = HOP_MESSAGES) -> dict[str, float]:
    """One-way latency publisher -> proxy -> subscriber, each in its own process, on TCP loopback."""
    from bus.sockets import run_proxy

    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    address = BusAddress(pub_addr=f"tcp://127.0.0.1:{port}", sub_addr=f"tcp://127.0.0.1:{_free_port()}")
    proxy = ctx.Process(target=run_proxy, args=(address,), daemon=True)
    proxy.start()
    ready, (parent_end, child_end) = ctx.Event(), ctx.Pipe()
    sub = ctx.Process(target=_subscriber, args=(address, count, ready, child_end), daemon=True)
    sub.start()
    client = BusClient(address, name="hop-pub")
    try:
        ready.wait(20)
        warm_until = time.monotonic() + 1.0  # let the subscription reach the publisher
        while time.monotonic() < warm_until:
            client.publish(Ping(nonce=-1))
            time.sleep(0.01)
        for i in range(count):
            client.publish(Ping(nonce=i))
            time.sleep(0.0005)  # 2 kHz: latency, not throughput
        delays: list[float] = parent_end.recv() if parent_end.poll(20) else []
    finally:
        client.close()
        sub.join(5)
        proxy.terminate()
        proxy.join(5)
    if not delays:
        return {"n": 0, "p50": float("nan"), "p99": float("nan")}
    ordered = sorted(delays)
    return {"n": len(ordered), "p50": statistics.median(ordered), "p99": ordered[int(0.99 * (len(ordered) - 1))]}


def in_process_first_audio_ms(text: str, reps: int, actor_records: list[dict[str, Any]]) -> dict[str, float]:
    """The typed turn's work (LLM, clause cut, persona, first TTS piece) in this one process, vs the actors."""
    from actors.llm_backends import LlamaCppGenerator, LlmSettings, build_prompt
    from actors.persona_text import ClauseSplitter, rocky_transform
    from actors.tts import PiperSynthesizer, TtsSettings

    generator = LlamaCppGenerator(LlmSettings(history_tokens=0))
    synth = PiperSynthesizer(TtsSettings())
    timings: list[float] = []
    for rep in range(reps + 1):
        started = time.perf_counter()
        splitter = ClauseSplitter(first_clause_words=5)
        first = 0.0
        clauses: list[str] = []
        for piece in generator.stream(build_prompt([], text), text):
            clauses += splitter.feed(piece)
            if clauses and not first:
                next(iter(synth.synthesize(rocky_transform(clauses[0]))))
                first = 1000 * (time.perf_counter() - started)
        if not first:  # the whole reply was one clause
            clauses = splitter.flush()
            next(iter(synth.synthesize(rocky_transform(clauses[0]))))
            first = 1000 * (time.perf_counter() - started)
        if rep > 0:  # the first repetition warms the caches, as the actors' warm-up does
            timings.append(first)
    actors = [r["release_to_first_audio_ms"] for r in actor_records if r.get("release_to_first_audio_ms")]
    return {"inproc_p50": statistics.median(timings),
            "actors_p50": statistics.median(actors) if actors else float("nan")}
