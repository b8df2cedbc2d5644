"""Tool calls as a chat model streams them: put together from pieces, then sent back.

Servers differ: OpenAI sends the id and name once and the arguments in many pieces;
others send a whole call in one chunk, omit the index, or send arguments as an object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ToolCall:
    """One call being received; ``arguments`` holds the JSON text in the pieces it came in."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCalls:
    """Tool calls put together from streamed pieces: id and name first, arguments in parts."""

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}

    def add(self, pieces: list[Any]) -> None:
        """Merge one chunk's pieces; tolerant of servers that omit the index or send a dict."""
        for position, piece in enumerate(pieces):
            index = getattr(piece, "index", None)
            call = self._calls.setdefault(index if isinstance(index, int) else position, ToolCall())
            call.id = getattr(piece, "id", None) or call.id
            function = getattr(piece, "function", None)
            if function is not None:
                call.name = getattr(function, "name", None) or call.name
                arguments = getattr(function, "arguments", None) or ""
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments)
                call.arguments.append(arguments)

    def finished(self) -> list[ToolCall]:
        """Named calls in index order, each with an id (some servers send none)."""
        calls = [self._calls[i] for i in sorted(self._calls)]
        for number, call in enumerate(calls):
            call.id = call.id or f"call_{number}"
        return [c for c in calls if c.name]


def assistant_message(text: str, calls: list[ToolCall]) -> dict[str, Any]:
    """The model's own turn with its tool calls, as it must be sent back with the results."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments) or "{}"},
            }
            for call in calls
        ],
    }
