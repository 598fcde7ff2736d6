"""Text generators behind the llm actor, and the few-shot prompt for base models.

gemma-3-270m as shipped is a base model without a chat template, so a plain
transcript prompt (persona line, two example exchanges, the history, then
`User: ...\\nRocky:`) with a newline stop gives short, sane replies. The same
transcript feeds chat servers too: `prompt_messages` turns it back into
system/user/assistant messages, so memory and prompt format live in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

# Each style is a persona line and example exchanges. "plain" asks for ordinary short English, which the
# rule-based `rocky` persona reshapes; "rocky" asks the LLM itself for Rocky's phrasing, which the gentler
# `rocky_llm` persona only tidies, so its examples are already what both Rocky transforms leave unchanged.
STYLES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "plain": (
        "Rocky is a friendly engineer. He answers in one or two short, simple sentences, warmly, "
        "like a good friend.",
        (("Hello, who are you?", "I am Rocky, an engineer. It is good to meet you, friend."),
         ("How are you today?", "I am good, thanks. The ship works and my friend is here, so it is a good day.")),
    ),
    "rocky": (
        "Rocky is a friendly alien engineer from the planet Erid. He speaks short, simple English without "
        "\"the\" or \"a\", ends questions with \"question?\" and says a word three times when he feels it.",
        (("Hello, who are you?", "I am Rocky. I am engineer from Erid. Good to meet you, friend."),
         ("How are you today?", "I am good good. Ship works, friend is here. Is good day."),
         ("Can you help me with my bike?", "Yes yes. I fix bike. What is broken, question?")),
    ),
}
STOP = ["\nUser:", "\n"]
_LINE_RE = re.compile(r"\s+")


@dataclass
class LlmSettings:
    backend: str = "llama-cpp"
    """llama-cpp (in process), openai (an OpenAI-compatible HTTP server), or echo (tests: repeats the question)."""
    style: str = "plain"
    """The prompt: plain (short friendly English, for persona rocky or none) or rocky (the LLM itself is asked
    for Rocky's phrasing, for persona rocky_llm)."""
    model: str = ""
    """A GGUF file; empty means the embedded gemma-3-270m."""
    max_tokens: int = 48
    """Longest reply, in tokens: a spoken answer should be short."""
    temperature: float = 0.7
    """Sampling randomness: 0 always picks the likeliest token."""
    top_p: float = 0.9
    """Nucleus sampling: only the likeliest tokens that together hold this probability."""
    seed: int = 42
    """Fixed so the same question gets the same answer (benchmarks compare modes)."""
    context_tokens: int = 1024
    """The model's context window (prompt, memory and reply must fit)."""
    history_tokens: int = 384
    """Conversation memory kept per session, oldest exchanges trimmed first."""
    threads: int = 2
    """CPU threads for llama.cpp."""
    streaming: bool = True
    """Publish tokens as they come (False: the sequential flow, all of them once the reply is whole)."""
    url: str = "http://127.0.0.1:8080/v1"
    """openai backend: the server's base URL, up to and including /v1 (llama-server, llama_cpp.server, vLLM;
    Ollama: http://HOST:11434/v1)."""
    api_key: str = ""
    """openai backend: bearer token if the server wants one; empty reads ROCKY_RELAY_LLM_API_KEY."""
    http_model: str = ""
    """openai backend: the model name the server expects (Ollama and vLLM need one); empty sends none."""
    api: str = "chat"
    """openai backend: chat (/chat/completions with system and example messages: for instruction-tuned
    models) or completions (/completions with the transcript prompt: what a base model like the embedded
    gemma-3-270m needs, having no chat template)."""
    connect_timeout_s: float = 2.0
    """openai backend: how long to wait for the TCP (and TLS) connection."""
    first_token_timeout_s: float = 10.0
    """openai backend: how long from the request to the first piece of text (prompt evaluation included)."""
    idle_timeout_s: float = 5.0
    """openai backend: the longest silence between two pieces before the server counts as stuck."""


def _one_line(text: str) -> str:
    # A newline inside a turn would end it early in the transcript and could forge a "Rocky:" line.
    return _LINE_RE.sub(" ", text).strip()


def _style(style: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    if style not in STYLES:
        raise ValueError(f"llm.style {style!r}: use one of {', '.join(STYLES)}")
    return STYLES[style]


def build_prompt(history: list[tuple[str, str]], user_text: str, style: str = "plain") -> str:
    persona, examples = _style(style)
    lines = [persona, ""]
    for user, rocky in (*examples, *history):
        lines += [f"User: {_one_line(user)}", f"Rocky: {_one_line(rocky)}"]
    lines += [f"User: {_one_line(user_text)}", "Rocky:"]
    return "\n".join(lines)


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """The chat messages a `build_prompt` transcript stands for: system, then user/assistant turns."""
    head, sep, transcript = prompt.partition("\n\n")
    if not sep:
        raise ValueError("not a build_prompt transcript: no blank line after the persona line")
    messages = [{"role": "system", "content": head}]
    for line in transcript.split("\n"):
        for prefix, role in (("User:", "user"), ("Rocky:", "assistant")):
            if line.startswith(prefix):
                content = line[len(prefix):].strip()
                if content:  # the closing "Rocky:" is the reply still to come
                    messages.append({"role": role, "content": content})
                break
        else:
            raise ValueError(f"not a build_prompt transcript line: {line[:60]!r}")
    return messages


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
        for _ in self.stream(build_prompt([], "Hi.", settings.style), "Hi."):
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
    _style(settings.style)  # a wrong style fails at start, not on the first turn
    if settings.backend == "llama-cpp":
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("llm.backend llama-cpp needs llama-cpp-python: run ./setup.sh, which "
                               "builds it with the safe CPU flags") from exc
        return LlamaCppGenerator(settings)
    if settings.backend == "openai":
        from actors.llm_http import OpenAiHttpGenerator  # imported late: it imports this module

        return OpenAiHttpGenerator(settings)
    if settings.backend == "echo":
        return EchoGenerator()
    raise ValueError(f"llm.backend {settings.backend!r}: use llama-cpp, openai or echo")
