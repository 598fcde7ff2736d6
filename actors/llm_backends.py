"""Text generators behind the llm actor, and the few-shot prompt for base models.

gemma-3-270m as shipped is a base model without a chat template, so a plain
transcript prompt (persona line, two example exchanges, the history, then
`User: ...\\nRocky:`) with a newline stop gives short, sane replies. The same
transcript feeds chat servers too: `prompt_messages` turns it back into
system/user/assistant messages, so memory and prompt format live in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, cast

from actors.cpu import free_cores, threads_for
from actors.llm_http import OpenAiHttpGenerator
from actors.llm_prompt import Conversation, check_style, clean
from actors.llm_settings import STOP, LlmSettings


class Generator(Protocol):
    description: str

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """Pieces of the reply as they are generated."""

    def prompt_tokens(self, conversation: Conversation) -> int:
        """Tokens the rendered prompt takes in this model's vocabulary."""

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary."""

    def prefill(self, conversation: Conversation) -> None:
        """Evaluate the prompt up to the end of `conversation.user` (words heard so far); may do nothing."""


class LlamaCppGenerator:
    """llama-cpp-python on the CPU, with the GGUF's chat template when it has one."""

    def __init__(self, settings: LlmSettings) -> None:
        from llama_cpp import Llama

        from models.registry import llm_model_file

        path = llm_model_file(settings.model)
        self.settings = settings
        threads, prefill_threads = threads_for("llm", settings.threads), threads_for("llm_prefill",
                                                                                   settings.prefill_threads)
        self.planned = (threads, prefill_threads)
        self.llm = Llama(model_path=str(path), n_ctx=settings.context_tokens, n_threads=threads,
                         n_threads_batch=prefill_threads, n_batch=256, seed=settings.seed, verbose=False)
        self.threads_now = self.planned
        self.template = ChatTemplate.of(self.llm)
        kind = "chat template" if self.template else "few-shot transcript"
        self.description = f"llama-cpp {path.name} ({kind}, {threads}/{prefill_threads} threads)"
        # Evaluate the fixed prompt head once so the first turn only prefills its new words.
        for _ in self.stream(Conversation("Hi.", style=settings.style)):
            break

    takes_reply_prefix = True
    """The rendered prompt can end inside the reply (`Conversation.reply_prefix`): a tool call's opening."""

    def render(self, conversation: Conversation) -> str:
        if self.template is None:  # a base model: no tools, no reply prefix
            return conversation.transcript()
        return self.template.render(conversation.messages(), list(conversation.tools)) + conversation.reply_prefix

    def fit_threads(self) -> None:
        """Use only the cores other runnable work leaves free (see actors/cpu.py), before the next step."""
        free = free_cores()  # one look per step: it reads /proc a few times
        wanted = (min(self.planned[0], free), min(self.planned[1], free))
        if wanted != self.threads_now:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llm.ctx, *wanted)
            self.threads_now = wanted

    def stream(self, conversation: Conversation) -> Iterator[str]:
        self.fit_threads()
        for part in self.llm.create_completion(
                self.render(conversation), max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature, top_p=self.settings.top_p, seed=self.settings.seed,
                stop=[*STOP, *(self.template.stop if self.template else [])], stream=True):
            text = part["choices"][0]["text"]  # type: ignore[index]
            self.fit_threads()  # the next token is computed when the caller asks for it
            if text:
                yield str(text)

    def prefill(self, conversation: Conversation) -> None:
        prompt, heard = self.render(conversation), clean(conversation.user)
        cut = prompt.rfind(heard) + len(heard)
        if cut > len(heard):
            self.fit_threads()
            # One token generated (and never shown) evaluates everything before it; the KV cache keeps it.
            self.llm.create_completion(prompt[:cut], max_tokens=1, temperature=0.0)

    def prompt_tokens(self, conversation: Conversation) -> int:
        return len(self.llm.tokenize(self.render(conversation).encode("utf-8"), add_bos=False, special=True))

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False))


class ChatTemplate:
    """The Jinja chat template inside a GGUF, rendered the way llama.cpp's server would."""

    def __init__(self, template: str, bos: str, eos: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.formatter = Jinja2ChatFormatter(template=template, bos_token=bos, eos_token=eos)
        self.stop = [eos] if eos else []

    @classmethod
    def of(cls, llm: Any) -> ChatTemplate | None:
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        def text(token: int) -> str:
            return str(llm._model.token_get_text(token)) if token >= 0 else ""
        return cls(template, text(llm.token_bos()), text(llm.token_eos()))

    def render(self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None) -> str:
        return str(self.formatter(messages=cast(Any, messages), tools=cast(Any, tools or None)).prompt)


class EchoGenerator:
    """Repeats the question, word by word: for tests and smoke runs, never the product."""

    description = "echo"

    def stream(self, conversation: Conversation) -> Iterator[str]:
        words = f"You said: {conversation.user.strip()}".split()
        for i, word in enumerate(words):
            yield word if i == 0 else f" {word}"

    def prompt_tokens(self, conversation: Conversation) -> int:
        return self.count_tokens(conversation.transcript())

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prefill(self, conversation: Conversation) -> None:
        """Nothing to evaluate."""


def make_generator(settings: LlmSettings) -> Generator:
    check_style(settings.style)  # a wrong style fails at start, not on the first turn
    if settings.backend == "llama-cpp":
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("llm.backend llama-cpp needs llama-cpp-python: run ./setup.sh, which "
                               "builds it with the safe CPU flags") from exc
        return LlamaCppGenerator(settings)
    if settings.backend == "openai":
        return OpenAiHttpGenerator(settings)
    if settings.backend == "echo":
        return EchoGenerator()
    raise ValueError(f"llm.backend {settings.backend!r}: use llama-cpp, openai or echo")
