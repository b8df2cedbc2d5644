"""One turn's input stream, chunk by chunk, as a worker hears it (``StreamMux.follow``).

Entries already read come first, then every pushed one, in order; undecodable entries
are skipped; ``InputIdle`` after the idle timeout. An ASR worker follows every utterance
it hears, ten chunks a second each, so per chunk this is kept lean: a pushed entry goes
to a deque and the one waiting reader is woken through one future (an ``asyncio.Queue``
and an async generator per chunk cost about as much as deciding what to send), and the
idle timer is re-armed only when it fires, not per entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from shared.messages import InputChunk, MessageError, decode
from shared.stream_reads import Entry

if TYPE_CHECKING:
    from shared.mux import StreamMux

log = logging.getLogger(__name__)


class InputIdle(TimeoutError):
    """A followed stream got no new entry for too long (its writer went away)."""


class InputFollow:
    """``async with InputFollow(mux, key, idle_timeout, read) as chunks``, then
    ``await chunks.next()`` until the end marker. ``read``: the entries the caller already
    has (``read_start``), first; the stream is followed from the last of them (else after
    ``from_id``)."""

    def __init__(
        self,
        mux: StreamMux,
        key: str,
        idle_timeout: float,
        read: Sequence[Entry] = (),
        from_id: str = "0-0",
    ) -> None:
        self._mux = mux
        self._key = key
        self._idle_timeout = idle_timeout
        self._entries: deque[tuple[str, dict[bytes, bytes]]] = deque(read)
        self._from_id = read[-1][0] if read else from_id
        self._loop = asyncio.get_running_loop()
        self._last_entry = self._loop.time()
        self._idle = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> InputFollow:
        self._timer = self._loop.call_later(self._idle_timeout, self._check_idle)
        try:
            await self._mux.subscribe(self._key, self._on_entry, self._from_id)
        except BaseException:
            self._timer.cancel()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._mux.unsubscribe(self._key)

    async def next(self) -> tuple[str, InputChunk]:
        """The next chunk (the end marker last); ``InputIdle`` when none came in time."""
        while True:
            while not self._entries:
                if self._idle:
                    raise InputIdle(f"no input on {self._key} for {self._idle_timeout:.0f}s")
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            entry_id, fields = self._entries.popleft()
            try:
                message = decode(fields)
            except MessageError:
                log.warning("undecodable input entry %s skipped", entry_id)
                continue
            if isinstance(message, InputChunk):
                return entry_id, message

    def _on_entry(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        self._last_entry = self._loop.time()
        self._entries.append((entry_id, fields))
        self._wake()

    def _check_idle(self) -> None:
        remaining = self._last_entry + self._idle_timeout - self._loop.time()
        if remaining > 0:
            self._timer = self._loop.call_later(remaining, self._check_idle)
        else:
            self._idle = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
