"""The one exception an agent raises when the user can be told why a reply failed.

The LLM worker catches it, speaks a short apology and sends the message in an ``error``
event, so the message must be readable and must never hold a key, a prompt or a reply.
"""

from __future__ import annotations

# Stable failure kinds (the ``reason`` of the client's ``error`` event).
NO_API_KEY = "no_api_key"
AUTH_FAILED = "auth_failed"
UNREACHABLE = "unreachable"
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
REJECTED = "rejected"
SERVER_ERROR = "server_error"
BAD_RESPONSE = "bad_response"


class LlmError(Exception):
    """A language model call failed; ``kind`` is one of the constants above."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
