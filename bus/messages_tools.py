"""The tool messages (tool.*, llm.tool): the llm asking the tools actor to run a tool, its answers and
catalogue, and what a turn's record keeps of a tool that ran. Importable from bus.messages with every
other message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bus.message_base import Message, message


@message("toolcall", topic="tool.call")
@dataclass(frozen=True, kw_only=True)
class ToolCall(Message):
    """The llm asks the tools actor to run one of its tools (a timer, an MCP server's) for a turn."""

    call_id: int
    """Unique per call of the asking llm; the answer carries it back."""
    name: str
    """The tool, as the catalogue names it."""
    arguments: dict[str, Any] = field(default_factory=dict)
    """Its arguments, as the model gave them (checked by the tool)."""
    undo: bool = False
    """Roll back what an earlier call (`call_id`) did: its turn was cancelled after it ran."""


@message("toolask", topic="tool.ask")
@dataclass(frozen=True, kw_only=True)
class ToolCatalogAsk(Message):
    """An llm starting up asks the tools actor for its catalogue (answered with a `ToolCatalog`)."""


@message("toolres", topic="tool.result")
@dataclass(frozen=True, kw_only=True)
class ToolResult(Message):
    """What a tool call gave: its text for the model, or why it failed."""

    call_id: int
    ok: bool
    result: str
    """The result (ok) or the error, in words."""


@message("toolcat", topic="ctl.tools")
@dataclass(frozen=True, kw_only=True)
class ToolCatalog(Message):
    """The tools the tools actor runs, as OpenAI-style function schemas (sent when asked, when it changes and
    when an llm announces itself ready). A control topic: every llm replica takes it, whatever session it
    serves."""

    tools: list[dict[str, Any]] = field(default_factory=list)


@message("toolused", topic="llm.tool")
@dataclass(frozen=True, kw_only=True)
class ToolUsed(Message):
    """A tool ran for a turn (for its record): the llm's calls, and a timer ringing."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    result: str = ""
    ok: bool = True
    ms: float = 0.0
    """How long the call took."""
    by: str = "llm"
    """Who ran it: llm (a call the model made) or timers (a timer rang: a turn nobody asked for)."""
