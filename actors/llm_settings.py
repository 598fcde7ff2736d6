"""The llm actor's settings and where a reply stops: shared by every generator (llama-cpp, the HTTP one)."""

from __future__ import annotations

from dataclasses import dataclass

STOP = ["\nUser:", "\n"]
"""Where a reply ends: one spoken paragraph, never a forged next turn of the transcript."""


@dataclass
class LlmSettings:
    backend: str = "llama-cpp"
    """llama-cpp (in process), openai (an OpenAI-compatible HTTP server), or echo (tests: repeats the question)."""
    style: str = "plain"
    """The prompt: plain (short friendly English, for persona rocky or none) or rocky (the LLM itself is asked
    for Rocky's phrasing, for persona rocky_llm)."""
    model: str = ""
    """A GGUF file, or a known name: empty or qwen2.5-1.5b is the embedded Qwen2.5-Coder-1.5B-Instruct
    (right on plain questions); gemma-3-270m (or tiny) the embedded tiny base model (fast, often wrong)."""
    max_tokens: int = 48
    """Longest reply, in tokens: a spoken answer should be short."""
    temperature: float = 0.7
    """Sampling randomness: 0 always picks the likeliest token."""
    top_p: float = 0.9
    """Nucleus sampling: only the likeliest tokens that together hold this probability."""
    seed: int = 42
    """Fixed so the same question gets the same answer (benchmarks compare modes)."""
    context_tokens: int = 2048
    """The model's context window (prompt, memory and reply must fit; the tool schemas take ~500 tokens)."""
    history_tokens: int = 384
    """Conversation memory kept per session; the oldest exchanges beyond it are folded into one summary line."""
    memory_dir: str = "logs/memory"
    """Where each session's conversation is saved (one 0600 file per session), so it outlives a restart of
    the llm; empty keeps it in the process only."""
    threads: int = 0
    """CPU threads for generating tokens; 0 takes the CPU plan's share (actors/cpu.py)."""
    prefill_threads: int = 0
    """CPU threads for evaluating the prompt; 0 takes the CPU plan's share."""
    speculate: bool = True
    """Work before release: prefill the question heard so far, and start the reply on a settled partial
    transcript, published only if the final transcript is the same (otherwise thrown away, unheard)."""
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
    models) or completions (/completions with the few-shot transcript: what a base model like the embedded
    gemma-3-270m needs, having no chat template)."""
    connect_timeout_s: float = 2.0
    """openai backend: how long to wait for the TCP (and TLS) connection."""
    first_token_timeout_s: float = 10.0
    """openai backend: how long from the request to the first piece of text (prompt evaluation included)."""
    idle_timeout_s: float = 5.0
    """openai backend: the longest silence between two pieces before the server counts as stuck."""
    tools: bool = True
    """Offer tools to an instruct model: time, arithmetic, and the tools actor's timers and MCP tools."""
    tool_rounds: int = 2
    """Tool calls one turn may make before it gives up with an apology."""
    tool_timeout_s: float = 8.0
    """Longest wait for the tools actor's answer to one call (keep it above tools.call_timeout_s)."""
    tools_wait_s: float = 3.0
    """At start, how long to wait for the tools actor's catalogue (its timer and MCP tools) before serving
    with the built-ins alone; a catalogue that comes later is taken when it comes."""
    tool_hints: bool = True
    """Questions that name the time, a date, a timer or a sum go straight to a tool call (the model still picks
    the tool and its arguments); the small default model otherwise tends to guess them."""
