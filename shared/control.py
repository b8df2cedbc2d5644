"""Cancel and takeover signals: every process hears them within milliseconds.

A cancelled turn is recorded twice: in the session's ``cancelled`` hash (durable, for a
worker that claims the turn later, for replay after a reconnect and for the history)
and as a message on one pub/sub channel, so workers already busy with the turn check a
local set between tokens and chunks instead of asking Redis each time. A process that
missed a message (it was reconnecting) still finds the record when it starts a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.backoff import Backoff
from shared.keys import Keys
from shared.lifecycle import shutting_down
from shared.streams import is_cluster

log = logging.getLogger(__name__)

_FORGET_AFTER_S = 900.0  # a turn is long over by then
_SUBSCRIBE_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class CancelRecord:
    """What the client had received when it cancelled (or barged in on) a reply."""

    chunks_sent: int  # tts_chunk events delivered before the cut
    sentences_heard: int  # sentences whose audio had started reaching the client
    at_ms: int
    # reply-stream id of the last event of the turn sent before the cut ("0-0": none; ""
    # in a record from before protocol v3): replay shows the turn's events up to it
    shown_until: str = ""

    def pack(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def unpack(cls, raw: bytes) -> CancelRecord:
        data = msgpack.unpackb(raw, raw=False)
        return cls(
            int(data["chunks_sent"]),
            int(data["sentences_heard"]),
            int(data["at_ms"]),
            str(data.get("shown_until", "")),
        )


Takeover = Callable[[], None]


class ControlChannel:
    """Publishes and hears cancels and takeovers; one pub/sub connection per process."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._cancelled: dict[tuple[str, str], float] = {}
        self._decided: dict[tuple[str, str], asyncio.Event] = {}  # early replies waited on
        self._takeover_handlers: dict[str, dict[str, Takeover]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscribed = asyncio.Event()

    # --- publishing ------------------------------------------------------------------

    async def cancel(self, session_id: str, turn_id: str, record: CancelRecord) -> None:
        """Record the cut durably, then tell every process."""
        self._remember(session_id, turn_id)
        key = self._keys.cancelled(session_id)
        await self._record_and_tell(key, turn_id, record.pack(), f"cancel {session_id} {turn_id}")

    async def _record_and_tell(self, key: str, field: str, value: object, message: str) -> None:
        """HSET with its TTL and PUBLISH in one MULTI; on a cluster, whose pipelines refuse
        PUBLISH, the PUBLISH follows the MULTI."""
        clustered = is_cluster(self._redis)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, value)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl)
            if not clustered:
                pipe.publish(self._keys.control, message)
            await pipe.execute()
        if clustered:
            await self._redis.publish(self._keys.control, message)

    async def announce_takeover(self, session_id: str, connection_id: str) -> None:
        """A connection resumed ``session_id``: older connections to it must close."""
        await self._redis.publish(self._keys.control, f"takeover {session_id} {connection_id}")

    # --- hearing ---------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Subscribed right now (messages published meanwhile are being heard)."""
        return self._subscribed.is_set()

    def is_cancelled(self, session_id: str, turn_id: str) -> bool:
        """Local and free: call it between tokens and chunks."""
        return (session_id, turn_id) in self._cancelled

    async def check(self, session_id: str, turn_id: str) -> bool:
        """At the start of a job: also ask Redis, in case the message was missed."""
        if self.is_cancelled(session_id, turn_id):
            return True
        if await self._redis.hexists(self._keys.cancelled(session_id), turn_id):
            self._remember(session_id, turn_id)
            return True
        return False

    async def wait_decided(self, session_id: str, attempt: str, wait_s: float) -> bool:
        """Whether a verdict on an early reply ``attempt`` was announced ("decided",
        published by ``shared.early_reply``) within ``wait_s``."""
        marker = (session_id, attempt)
        event = self._decided.setdefault(marker, asyncio.Event())
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await event.wait()
            return event.is_set()
        finally:
            self._decided.pop(marker, None)

    async def records(self, session_id: str) -> dict[str, CancelRecord]:
        raw = await self._redis.hgetall(self._keys.cancelled(session_id))
        return {turn.decode(): CancelRecord.unpack(value) for turn, value in raw.items()}

    def on_takeover(self, session_id: str, connection_id: str, handler: Takeover) -> None:
        """Call ``handler`` when another connection resumes ``session_id``."""
        self._takeover_handlers.setdefault(session_id, {})[connection_id] = handler

    def forget_takeover(self, session_id: str, connection_id: str) -> None:
        handlers = self._takeover_handlers.get(session_id, {})
        handlers.pop(connection_id, None)
        if not handlers:
            self._takeover_handlers.pop(session_id, None)

    def _remember(self, session_id: str, turn_id: str) -> None:
        now = time.monotonic()
        self._cancelled[(session_id, turn_id)] = now + _FORGET_AFTER_S
        if len(self._cancelled) > 10_000:
            self._cancelled = {k: t for k, t in self._cancelled.items() if t > now}

    def _hear_safely(self, message: str) -> None:
        """One message that fails (a takeover handler's bug, a malformed line) is logged
        and skipped: the listener itself must never end, or this process stops hearing
        every cancel and takeover from then on."""
        try:
            self._hear(message)
        except Exception:
            log.warning("control message %r not handled", message[:200], exc_info=True)

    def _hear(self, message: str) -> None:
        kind, _, rest = message.partition(" ")
        session_id, _, detail = rest.partition(" ")
        if kind == "cancel":
            self._remember(session_id, detail)
        elif kind == "decided":
            if waiter := self._decided.get((session_id, detail)):
                waiter.set()
        elif kind == "takeover":
            for connection_id, handler in list(self._takeover_handlers.get(session_id, {}).items()):
                if connection_id != detail:
                    handler()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; returns once subscribed (or after a few seconds without Redis)."""
        self._task = asyncio.create_task(self._listen(), name="control-channel")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SUBSCRIBE_WAIT_S):
                await self._subscribed.wait()

    async def stop(self) -> None:
        self._stopping = True  # a cancel that redis-py turns into a connection error ends it too
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=_SUBSCRIBE_WAIT_S)  # never hang a shutdown

    async def _listen(self) -> None:
        backoff = Backoff()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                if is_cluster(self._redis):  # its pub/sub routes by a slot map it does not
                    await self._redis.initialize()  # load itself (redis-py#4296): KeyError
                await pubsub.subscribe(self._keys.control)
                self._subscribed.set()
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        self._hear_safely(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                if self._stopping:
                    return
                delay = backoff.next_delay()
                if backoff.repeated and not shutting_down():  # quiet on a first failure
                    # too, a signal to stop may be a moment behind it (compose down)
                    log.warning("control channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await pubsub.aclose()
