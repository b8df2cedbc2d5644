"""A request the server refuses before it becomes a turn ends the client's wait at once.

Requests back to back (a benchmark's typed turns, a dozen in a few seconds) outrun
``COMMANDS_PER_MINUTE``'s burst; the refusal (``rate_limited``) names no turn, because
none was opened. ``VoiceClient.ask`` waited for the end of a turn that never came and
counted the request as a turn without an end once its limit passed.
"""

from __future__ import annotations

from tests.test_gateway_limits import running_gateway
from voice_agent.client import VoiceClient


async def test_a_refused_request_ends_at_its_refusal(redis_url: str) -> None:
    async with (
        running_gateway(redis_url, commands_per_minute=1) as gateway,  # a burst of one
        VoiceClient.connect(gateway.url) as client,
    ):
        await client.send_command("top headlines")  # turn t1 (no worker answers here)
        # the guard turns a wait for an end that never comes into a failure
        refused = await client.ask("world headlines", limit_s=30)
    assert refused.turn_id is None
    assert [e["code"] for e in refused.errors] == ["rate_limited"]
    assert refused.complete is None
