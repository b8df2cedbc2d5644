"""Every key of a session lives as long as the session: a disconnect shortens them all to
the resume window, a resume gives them all the session's lifetime again, and a turn
refreshes the detected language with the session record.

A real gateway (``tests.test_gateway_limits.running_gateway``) on the test Redis, real
WebSocket clients; the keys a worker writes (reply stream, history, detected language)
are written here as a worker writes them. Lifetimes are read with PTTL.
"""

from __future__ import annotations

from redis.asyncio import Redis

from shared.messages import LlmJob, ReplyEvent
from shared.settings import Settings
from shared.streams import ReplyWriter
from tests.test_gateway_limits import running_gateway
from voice_agent.client import VoiceClient

SESSION_TTL = 900
WINDOW = 5


def worker_keys(settings: Settings, session_id: str) -> list[str]:
    keys = settings.keys
    return [
        keys.session(session_id),
        keys.reply(session_id),
        keys.history(session_id),
        keys.language(session_id),
        keys.news_state(session_id),
    ]


async def write_like_a_worker(redis: Redis, settings: Settings, session_id: str) -> None:
    """A reply, a remembered turn, the detected language and the news state, each with
    the session's lifetime, as the workers write them."""
    writer = ReplyWriter(redis, settings.keys, SESSION_TTL, settings.reply_maxlen)
    await writer.emit(ReplyEvent("agent_response", session_id, "t1", {"text": "Hello."}))
    keys = settings.keys
    await redis.rpush(keys.history(session_id), b"turn")
    await redis.expire(keys.history(session_id), SESSION_TTL)
    await redis.set(keys.language(session_id), "fr", ex=SESSION_TTL, nx=True)
    await redis.set(keys.news_state(session_id), b"state", ex=3600)


async def lifetimes_ms(redis: Redis, keys: list[str]) -> dict[str, int]:
    return {key: await redis.pttl(key) for key in keys}


async def test_a_resume_restores_the_lifetime_of_every_session_key(redis_url: str) -> None:
    async with running_gateway(
        redis_url, session_ttl_seconds=SESSION_TTL, resume_window_seconds=WINDOW
    ) as gateway:
        settings = gateway.settings
        redis = Redis.from_url(settings.redis_url)
        async with VoiceClient.connect(gateway.url) as client:
            session_id, query = client.session_id, client.resume_query()
            await write_like_a_worker(redis, settings, session_id)
        keys = worker_keys(settings, session_id)
        await gateway.app.state.all_closed.wait()  # the gateway saw the close
        detached = await lifetimes_ms(redis, keys)
        assert all(0 < ttl <= WINDOW * 1000 for ttl in detached.values()), detached

        async with VoiceClient.connect(f"{gateway.url}?{query}") as again:
            assert again.connected["resumed"] is True
            resumed = await lifetimes_ms(redis, keys)
        await redis.delete(*keys)
        await redis.aclose()
    # every key lives for the session's lifetime again, not just the session record
    assert all(ttl > (SESSION_TTL - 60) * 1000 for ttl in resumed.values()), resumed


async def test_a_turn_keeps_the_detected_language_as_long_as_the_session(
    redis_url: str,
) -> None:
    """The language is set once, by the first turn that tells it; later turns refresh the
    session record, and the language with it (else a ``lang_auto`` session would fall
    back to the default language ``SESSION_TTL_SECONDS`` after its first turn)."""
    async with running_gateway(redis_url, session_ttl_seconds=SESSION_TTL) as gateway:
        settings = gateway.settings
        redis = Redis.from_url(settings.redis_url)
        async with VoiceClient.connect(gateway.url) as client:
            session_id = client.session_id
            language = settings.keys.language(session_id)
            await redis.set(language, "fr", ex=30)  # detected long ago: about to expire
            store = gateway.app.state.store
            job = LlmJob(session_id, "t2", "et le sport ?", "command", 0, {})
            stream = settings.keys.jobs_for("llm", session_id)
            await store.publish_turn(session_id, 2, stream, job, settings.jobs_maxlen)
            record, lang = (
                await redis.pttl(settings.keys.session(session_id)),
                await redis.pttl(language),
            )
        await redis.delete(*worker_keys(settings, session_id), stream)
        await redis.aclose()
    assert lang > 60_000 and abs(record - lang) < 5_000, (record, lang)


async def test_a_connected_client_that_pings_keeps_its_session_keys(redis_url: str) -> None:
    """No turn for a long while, but connected (clients that do not talk send ``ping``):
    the session's keys, the detected language among them, do not expire under it."""
    async with running_gateway(redis_url, session_ttl_seconds=SESSION_TTL) as gateway:
        settings = gateway.settings
        redis = Redis.from_url(settings.redis_url)
        async with VoiceClient.connect(gateway.url) as client:
            session_id = client.session_id
            await write_like_a_worker(redis, settings, session_id)
            keys = worker_keys(settings, session_id)
            for key in keys:  # long ago: about to expire
                await redis.expire(key, 30)
            await client.send_event("ping", {})
            while (await client.next_event(30))["event"] != "pong":
                pass
            kept = await lifetimes_ms(redis, keys)
        await redis.delete(*keys)
        await redis.aclose()
    assert all(ttl > (SESSION_TTL - 60) * 1000 for ttl in kept.values()), kept
