"""The language a turn is answered in: the client's ``?lang=``, else the session's detected
language, else detection from this request's text, else ``DEFAULT_LANGUAGE``.

Detection happens at most once per session that did not say: the first request whose text
tells (``shared.languages.detect_language``) fixes the session's language in Redis
(``Keys.language``, set NX so two workers racing agree), and every later turn, the TTS
voice and the news agent's phrases follow it. A request that does not tell ("BBC", "OK")
is answered in the default language and leaves detection to the next one.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from shared.languages import detect_language, language
from shared.messages import LlmJob
from shared.settings import Settings

log = logging.getLogger(__name__)


async def turn_language(redis: aioredis.Redis, settings: Settings, job: LlmJob) -> str:
    """The supported language code this turn's reply is written and spoken in."""
    chosen = (job.options or {}).get("lang")
    if chosen:
        return language(str(chosen), settings.default_language).code
    key = settings.keys.language(job.session_id)
    stored = await redis.get(key)
    if stored:
        return language(stored.decode(), settings.default_language).code
    detected = detect_language(job.text)
    if detected is None:
        return language(settings.default_language).code
    ttl = settings.session_ttl_seconds
    if not await redis.set(key, detected, ex=ttl, nx=True):  # another turn decided first
        stored = await redis.get(key)
        detected = stored.decode() if stored else detected
    log.info("session language detected: %s", detected)
    return detected
