"""The bench's measurements of the bus itself and of the actor system's overhead."""

from __future__ import annotations

import multiprocessing
import os
import platform
import socket
import statistics
import time
from pathlib import Path
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
    from bus.proxy import run_proxy

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


def in_process_first_audio_ms(model: str, prompts: list[Path], stt_model: str = "") -> list[float]:
    """The same three models called one after another in one process, for each spoken prompt: the whole
    recording transcribed, the reply streamed to its first clause, that clause's first Piper chunk. What a
    simple script does; the actor system's figure should beat it. The first prompt warms up and is dropped."""
    from actors.llm_backends import LlamaCppGenerator
    from actors.llm_prompt import Conversation
    from actors.llm_settings import LlmSettings
    from actors.persona import PersonaSettings
    from actors.persona_text import ClauseSplitter, rocky_transform
    from actors.stt import SttSettings
    from actors.stt_whisper import WhisperRecognizer
    from actors.tts import PiperSynthesizer, TtsSettings
    from audio.wav import load_pcm16_mono

    recognizer = WhisperRecognizer(SttSettings(model=stt_model))
    generator = LlamaCppGenerator(LlmSettings(model=model, history_tokens=0))
    synth = PiperSynthesizer(TtsSettings())
    timings: list[float] = []
    for path in [prompts[0], *prompts]:
        audio = load_pcm16_mono(path).astype("float32") / 32768.0
        started = time.perf_counter()  # the release: the recording is whole
        text = recognizer.transcribe(audio)
        splitter = ClauseSplitter(first_clause_words=PersonaSettings().first_clause_words)
        clauses: list[str] = []
        for piece in generator.stream(Conversation(text)):
            clauses += splitter.feed(piece)
            if clauses:
                break
        clauses = clauses or splitter.flush() or [text]
        next(iter(synth.synthesize(rocky_transform(clauses[0]))))
        timings.append(1000 * (time.perf_counter() - started))
    return timings[1:]
