"""A reply started before the end of speech was confirmed (``PREEMPTIVE_REPLY``).

The gateway starts it during a pause after a complete request and holds its events; if
the user goes on speaking it is cancelled like any reply, and nothing of it may remain.
Its text and audio already go to the session's held stream (``Keys.held_reply``). What
else a reply leaves behind is kept aside until the gateway decides:

* the agent's session state (the stories last presented, for "the second one") is a
  copy under the attempt's own name, moved over the session's only once confirmed;
* the conversation memory is written only once confirmed, under the turn the client
  knows (``t5``, not ``t5.p1``), so a later cancel of that turn cuts it as usual.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.control import ControlChannel
from shared.keys import Keys
from shared.messages import LlmJob


class EarlyReply:
    def __init__(self, redis: aioredis.Redis, keys: Keys, job: LlmJob) -> None:
        self._redis = redis
        self._keys = keys
        self._job = job
        self.agent_session = f"{job.session_id}~{job.turn_id}"  # the agent's state lives here
        self.reply_turn = str(job.options.get("reply_turn") or job.turn_id)

    async def begin(self) -> None:
        """Give the agent a copy of the session's state to work on."""
        scratch = self._keys.news_state(self.agent_session)
        await self._redis.delete(scratch)
        await self._redis.copy(self._keys.news_state(self._job.session_id), scratch)

    async def settle(self, control: ControlChannel | None, wait_s: float) -> bool:
        """Wait for the gateway's verdict; keep the agent's state only if it was used."""
        job = self._job
        used = control is not None and await control.verdict(job.session_id, job.turn_id, wait_s)
        scratch = self._keys.news_state(self.agent_session)
        if used and await self._redis.exists(scratch):
            await self._redis.rename(scratch, self._keys.news_state(job.session_id))
        else:
            await self._redis.delete(scratch)
        return used


def early_reply(redis: aioredis.Redis, keys: Keys, job: LlmJob) -> EarlyReply | None:
    return EarlyReply(redis, keys, job) if job.options.get("held") else None
