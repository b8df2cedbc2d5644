"""Relays every session's reply stream to its WebSocket through one ``StreamMux``.

One XREAD over all of this process's reply streams (instead of one blocked connection
per session) keeps a gateway at a handful of Redis connections however many sessions it
holds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import MessageError, ReplyEvent, decode
from shared.mux import StreamMux

log = logging.getLogger(__name__)

Deliver = Callable[[ReplyEvent, str], None]


class ReplyRelay:
    def __init__(self, redis: aioredis.Redis, keys: Keys, push: bool = True) -> None:
        self._keys = keys
        self.gateway_id = uuid.uuid4().hex[:12]
        self._mux = StreamMux(redis, keys.mux_wake(f"gw-{self.gateway_id}"), push=push)
        self._owners: dict[str, Deliver] = {}

    def start(self) -> None:
        self._mux.start("reply-relay")

    async def stop(self) -> None:
        await self._mux.stop()

    async def subscribe(self, session_id: str, deliver: Deliver, from_id: str = "0-0") -> None:
        """Start relaying ``session_id``'s replies (after ``from_id``) to ``deliver``."""
        await self.follow(self._keys.reply(session_id), deliver, from_id)

    def unsubscribe(self, session_id: str, deliver: Deliver | None = None) -> None:
        """Stop relaying ``session_id``'s replies (see ``unfollow``)."""
        self.unfollow(self._keys.reply(session_id), deliver)

    async def follow(self, key: str, deliver: Deliver, from_id: str = "0-0") -> None:
        """Relay the reply events of any stream ``key`` (a session's reply stream, its
        early replies) to ``deliver``, which becomes the stream's one owner here."""
        self._owners[key] = deliver

        def on_entry(entry_id: str, fields: dict[bytes, bytes]) -> None:
            try:
                event = decode(fields)
            except MessageError:
                log.warning("undecodable reply entry %s skipped", entry_id)
                return
            if isinstance(event, ReplyEvent):
                deliver(event, entry_id)

        await self._mux.subscribe(key, on_entry, from_id)

    def unfollow(self, key: str, deliver: Deliver | None = None) -> None:
        """Stop relaying ``key``; with ``deliver``, only if it is still the stream's owner
        (a resumed session may already have a newer connection on this gateway)."""
        # ``==``, not ``is``: each ``session.delivery.deliver`` is a new bound-method object
        if deliver is not None and self._owners.get(key) != deliver:
            return
        self._owners.pop(key, None)
        self._mux.unsubscribe(key)
