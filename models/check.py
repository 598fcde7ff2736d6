"""`python -m models.check`: every default model is present, loads, and does one small job.

setup.sh runs it so a broken install (a crashing llama.cpp build, a missing
voice) is caught at set-up, with the fix named, rather than in the first turn.
"""

from __future__ import annotations

import sys
import time

from models.registry import ModelNotFound, llm_model_file, stt_model_dir, tts_voice_file


def main() -> int:
    try:
        started = time.perf_counter()
        gguf = llm_model_file("")
        if gguf.stat().st_size == 0:
            raise ModelNotFound(f"{gguf} is empty; delete it and run setup again")
        print(f"llm  {gguf} ({gguf.stat().st_size / 1e6:.0f} MB)")
        from llama_cpp import Llama

        llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=2, verbose=False)
        out = llm.create_completion("User: Hello!\nRocky:", max_tokens=8, temperature=0.0, stop=["\n"])
        print(f"     tiny generation ok: {out['choices'][0]['text'].strip()!r}")  # type: ignore[index]
        stt = stt_model_dir("")
        from faster_whisper import WhisperModel

        WhisperModel(str(stt), device="cpu", compute_type="int8", local_files_only=True)
        print(f"stt  {stt} loads")
        voice = tts_voice_file("")
        from piper import PiperVoice

        PiperVoice.load(voice)
        print(f"tts  {voice} loads")
        print(f"models ok in {time.perf_counter() - started:.1f} s")
        return 0
    except (ModelNotFound, ImportError, ValueError, OSError) as exc:
        print(f"model check failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
