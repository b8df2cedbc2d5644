"""An agent that repeats the request: for measuring the pipeline, not for users.

``LLM_PROVIDER=echo``: replies "You said: <text>." with no model and no network, so a
benchmark sees transport and TTS cost alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from shared.engines import AgentRequest


class EchoAgent:
    name = "echo"

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        yield f"You said: {request.text.rstrip('.!?')}."
