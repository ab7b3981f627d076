"""Model text to actions.

Recognized, in this order of precedence:

1. Hermes/Qwen blocks: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
2. OpenAI-style JSON: ``{"name": ..., "arguments": ...}``, ``{"function": {...}}`` or
   ``{"tool_calls": [...]}``, bare or in a fenced code block; ``arguments`` may be a JSON string.
3. Compact calls: ``name(arg=value, ...)`` with Python-literal or bare-word values.
4. Anything else is a plain final answer.

``parse_action`` never raises: a call that is attempted but malformed comes back with ``error``
set, so the environment can tell the agent what went wrong.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from agentgym.types import ToolCall

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.DOTALL)
_COMPACT = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)`?\s*\.?\s*$", re.DOTALL)


_CALL_MARKERS = ("<", "`", "{", "[", "(")  # text with none of these cannot hold a tool call


@dataclass(frozen=True)
class ParsedAction:
    """The result of parsing model text: a tool call, a plain answer, or a malformed call."""

    call: ToolCall | None
    text: str
    error: str | None = None

    @property
    def is_answer(self) -> bool:
        """True when the text holds no tool call attempt at all."""
        return self.call is None and self.error is None


def parse_action(text: str, tool_names: Iterable[str] | None = None) -> ParsedAction:
    """Parse model output into a tool call or a plain answer; never raises.

    ``tool_names`` (when given) restricts the compact ``name(...)`` form to known tools, so prose
    such as ``Sure (I think)`` stays an answer; an unknown ``name(key=value)`` with no space before
    the parenthesis is still read as a call, so the environment can say the tool does not exist. JSON forms are accepted for any name; the
    environment reports unknown tools.
    """
    try:
        text = text if isinstance(text, str) else str(text)
        if not any(m in text for m in _CALL_MARKERS):  # plain text, the common case for text-command agents
            return ParsedAction(None, text.strip())
        return _parse(text, set(tool_names) if tool_names else None)
    except Exception as exc:  # a parser must not take an episode down
        return ParsedAction(None, str(text), f"could not parse the action: {exc}")


def _parse(text: str, tool_names: set[str] | None) -> ParsedAction:
    block = _TOOL_CALL_BLOCK.search(text)
    if block:
        call, error = _from_json_text(block.group(1))
        outside = (text[: block.start()] + text[block.end():]).strip()
        return ParsedAction(call, outside, error)
    for candidate in [*(m.group(1) for m in _FENCE.finditer(text)), text]:
        stripped = candidate.strip()
        if stripped.startswith("{") or stripped.startswith("["):
            call, error = _from_json_text(stripped)
            if call is not None or _looks_like_call_json(stripped):
                return ParsedAction(call, "" if candidate is text else text.replace(candidate, "").strip(), error)
    m = _COMPACT.match(text)
    if m and (tool_names is None or m.group(1) in tool_names):
        return _from_compact(m.group(1), m.group(2), text)
    if m and "=" in m.group(2) and re.match(r"\s*`?[A-Za-z_][A-Za-z0-9_]*\(", text):
        # name(key=value) with no space before "(": a call to a tool that does not exist, not prose
        # like "Sure (I think)"; the environment then names the valid tools
        attempt = _from_compact(m.group(1), m.group(2), text)
        if attempt.call is not None:
            return attempt
    return ParsedAction(None, text.strip())


def format_tool_call(call: ToolCall) -> str:
    """Render a tool call as model text in the Hermes format the parser reads first.

    Text stays as written, not ``\\uXXXX``-escaped: over search-v0's expert actions, SmolLM2 needs up
    to 55 tokens for an escaped call and 37 for the same call written plainly."""
    return f"<tool_call>{json.dumps({'name': call.name, 'arguments': call.arguments}, ensure_ascii=False)}</tool_call>"


def hermes_tool_calls(text: str) -> tuple[list[ToolCall], str] | None:
    """Every ``<tool_call>{...}</tool_call>`` block of ``text`` and the text around them (stripped), as a
    server-side tool parser returns them; None when there is none or one does not parse (then the
    text stays content, as vLLM's parser leaves it)."""
    blocks = list(_TOOL_CALL_BLOCK.finditer(text))
    if not blocks:
        return None
    calls = []
    for block in blocks:
        try:
            obj = json.loads(block.group(1))
        except json.JSONDecodeError:
            return None
        if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list):
            obj = obj["tool_calls"]
        for item in obj if isinstance(obj, list) and obj else [obj]:  # a list holds several calls: keep them all
            call, error = _from_obj(item)
            if call is None or error:
                return None
            calls.append(call)
    return calls, _TOOL_CALL_BLOCK.sub("", text).strip()


def _looks_like_call_json(s: str) -> bool:
    return any(k in s for k in ('"name"', '"function"', '"tool_calls"', '"arguments"'))


def _from_json_text(s: str) -> tuple[ToolCall | None, str | None]:
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as exc:
        return None, f"the tool call is not valid JSON ({exc.msg} at position {exc.pos})"
    return _from_obj(obj)


def _from_obj(obj: Any) -> tuple[ToolCall | None, str | None]:
    if isinstance(obj, list):
        if not obj:
            return None, "the tool call list is empty"
        obj = obj[0]
    if not isinstance(obj, dict):
        return None, "a tool call must be a JSON object with 'name' and 'arguments'"
    if "tool_calls" in obj:
        return _from_obj(obj["tool_calls"])
    call_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None, "the tool call has no 'name' string"
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None, f"the arguments of '{name}' are not valid JSON"
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None, f"the arguments of '{name}' must be a JSON object"
    return ToolCall(name=name, arguments=args, id=call_id), None


def _from_compact(name: str, inner: str, text: str) -> ParsedAction:
    try:
        node = ast.parse(f"f({inner})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ParsedAction(None, text, f"could not read the arguments of {name}(...)")
    if not isinstance(node, ast.Call):  # e.g. "f(x=1) and g(y=2)": more than one call
        return ParsedAction(None, text, f"could not read the arguments of {name}(...)")
    if node.args:
        return ParsedAction(None, text, f"use keyword arguments: {name}(arg=value, ...)")
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return ParsedAction(None, text, f"use keyword arguments: {name}(arg=value, ...)")
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            if isinstance(kw.value, ast.Name):  # bare word: go(target=kitchen)
                args[kw.arg] = kw.value.id
            else:
                return ParsedAction(None, text, f"the value of '{kw.arg}' is not a literal")
    return ParsedAction(ToolCall(name=name, arguments=args), "")


@functools.lru_cache(maxsize=64)
def _keyword_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(map(re.escape, names))
    return re.compile(rf"^\s*(?:action\s*:\s*)?({alternatives})\b\s*(?:\[(.*)\]|\((.*)\)|:?\s*(.*?))\s*\.?\s*$",
                      re.I | re.S)


def keyword_action(text: str, arguments: dict[str, str]) -> ToolCall | None:
    """Read the first non-blank line of ``text`` as ``name[value]``, ``name(value)``, ``name: value`` or
    ``name value`` (after an optional ``Action:``), for a tool ``name`` in ``arguments``, which maps each
    tool to the argument its value fills; None for other text. For environments' ``on_text``."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    m = _keyword_pattern(tuple(arguments)).match(line)
    if m is None:
        return None
    name = next(n for n in arguments if n.lower() == m.group(1).lower())
    value = next(g for g in m.groups()[1:] if g is not None).strip().strip("\"'`").strip()
    return ToolCall(name=name, arguments={arguments[name]: value})
