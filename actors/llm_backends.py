"""Text generators behind the llm actor, and the few-shot prompt for base models.

gemma-3-270m as shipped is a base model without a chat template, so a plain
transcript prompt (persona line, two example exchanges, the history, then
`User: ...\\nRocky:`) with a newline stop gives short, sane replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

PERSONA_LINE = ("Rocky is a friendly alien engineer from the planet Erid. He answers in one or two "
                "short, simple sentences, warmly, like a good friend.")
EXAMPLES = (
    ("Hello, who are you?", "I am Rocky. I am engineer. Good to meet you, friend."),
    ("How are you today?", "I am good. Ship works, friend is here. Is good day."),
)
STOP = ["\nUser:", "\n"]


@dataclass
class LlmSettings:
    backend: str = "llama-cpp"
    """llama-cpp, or echo (tests: repeats the question back)."""
    model: str = ""
    """A GGUF file; empty means the embedded gemma-3-270m."""
    max_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 42
    """Fixed so the same question gets the same answer (benchmarks compare modes)."""
    context_tokens: int = 1024
    history_tokens: int = 384
    """Conversation memory kept per session, oldest exchanges trimmed first."""
    threads: int = 2
    streaming: bool = True
    """Publish tokens as they come (False: the sequential flow, all of them once the reply is whole)."""


def build_prompt(history: list[tuple[str, str]], user_text: str) -> str:
    lines = [PERSONA_LINE, ""]
    for user, rocky in (*EXAMPLES, *history):
        lines += [f"User: {user}", f"Rocky: {rocky}"]
    lines += [f"User: {user_text}", "Rocky:"]
    return "\n".join(lines)


class Generator(Protocol):
    description: str

    def stream(self, prompt: str, user_text: str) -> Iterator[str]:
        """Pieces of the reply as they are generated."""

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary."""


class LlamaCppGenerator:
    """llama-cpp-python on the CPU. It reuses the evaluated prefix of the previous prompt."""

    def __init__(self, settings: LlmSettings) -> None:
        from llama_cpp import Llama

        from models.registry import llm_model_file

        path = llm_model_file(settings.model)
        self.settings = settings
        self.description = f"llama-cpp {path.name}"
        self.llm = Llama(model_path=str(path), n_ctx=settings.context_tokens, n_threads=settings.threads,
                         n_batch=256, seed=settings.seed, verbose=False)
        # Evaluate the fixed prompt head once so the first turn only prefills its new words.
        for _ in self.stream(build_prompt([], "Hi."), "Hi."):
            break

    def stream(self, prompt: str, user_text: str) -> Iterator[str]:
        for part in self.llm.create_completion(
                prompt, max_tokens=self.settings.max_tokens, temperature=self.settings.temperature,
                top_p=self.settings.top_p, seed=self.settings.seed, stop=STOP, stream=True):
            text = part["choices"][0]["text"]  # type: ignore[index]
            if text:
                yield str(text)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False))


class EchoGenerator:
    """Repeats the question, word by word: for tests and smoke runs, never the product."""

    description = "echo"

    def stream(self, prompt: str, user_text: str) -> Iterator[str]:
        words = f"You said: {user_text.strip()}".split()
        for i, word in enumerate(words):
            yield word if i == 0 else f" {word}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def make_generator(settings: LlmSettings) -> Generator:
    if settings.backend == "llama-cpp":
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("llm.backend llama-cpp needs llama-cpp-python: run ./setup.sh, which "
                               "builds it with the safe CPU flags") from exc
        return LlamaCppGenerator(settings)
    if settings.backend == "echo":
        return EchoGenerator()
    raise ValueError(f"llm.backend {settings.backend!r}: use llama-cpp or echo")
