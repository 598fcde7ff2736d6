"""Tools that need no network and no other process: the time and date, and arithmetic computed exactly.

They run inside the llm actor. Each tool is an OpenAI-style function schema (kept short: every word of it
sits in the model's prompt head) and a function from its arguments to the text the model reads back.
Arithmetic is parsed into a Python AST and only numbers and + - * / // % ** and parentheses are evaluated,
never `eval`, with bounds on size so no expression can take the CPU or memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

ToolFn = Callable[[dict[str, Any]], str]


class ToolError(ValueError):
    """A tool could not do what it was asked; the message says why, in words the model can pass on."""


def schema(name: str, description: str, **params: tuple[str, str]) -> dict[str, Any]:
    """An OpenAI-style function schema; `params` maps each (required) argument to (JSON type, description)."""
    properties = {key: {"type": kind, "description": text} for key, (kind, text) in params.items()}
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(params)}}}


def now_local() -> datetime:
    """Now, in this host's time zone (the zone the OS is set to: TZ or /etc/localtime)."""
    return datetime.now().astimezone()


def get_time(_args: dict[str, Any], clock: Callable[[], datetime] = now_local) -> str:
    """The local time and date, spelled so a model can say it (and a test can check it)."""
    t = clock()
    zone = t.tzname() or "local time"
    # Short: this model reads the result out nearly word for word.
    return f"{t:%I:%M %p}".lstrip("0") + f" on {t:%A} {t.day} {t:%B} {t.year} ({zone})"


MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e15
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
OPERATOR_WORDS = {"plus": "+", "minus": "-", "multiplied by": "*", "times": "*", "x": "*", "\u00d7": "*",
                  "divided by": "/", "over": "/", "\u00f7": "/"}
"""Spoken and typographic operators, and the symbol each one is computed as."""


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"the exponent {right} is too big (at most {MAX_EXPONENT})")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
            raise ToolError("the result is too big or not a real number")
        return value  # type: ignore[no-any-return]
    raise ToolError("only numbers, + - * / // % ** and parentheses can be computed")


def calculate(args: dict[str, Any]) -> str:
    """`expression` computed exactly, e.g. "4821 + 7396" -> "12217"."""
    expression = args.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("calculate needs an expression, e.g. 4821 + 7396")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is too long (at most {MAX_EXPRESSION_CHARS} characters)")
    text = expression.lower().replace(",", "").replace("^", "**")
    for word, symbol in OPERATOR_WORDS.items():
        text = text.replace(word, symbol)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"{expression!r} is not an arithmetic expression") from None
    value = _evaluate(tree)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError("the result is not a finite number")
        value = int(value) if value.is_integer() else round(value, 6)
    return str(value)


BUILTIN: dict[str, tuple[dict[str, Any], ToolFn]] = {
    "get_time": (schema("get_time", "The current local time and date."), get_time),
    "calculate": (schema("calculate", "Compute arithmetic exactly.",
                         expression=("string", "e.g. 4821 + 7396")), calculate),
}
"""name -> (schema, function): what the llm runs itself."""
