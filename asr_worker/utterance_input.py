"""One utterance's input stream, chunk by chunk, as the ASR worker hears it.

The contract of ``StreamMux.follow`` (entries already read first, then every pushed one,
in order; undecodable entries skipped; ``InputIdle`` after the idle timeout), without its
queue and async generator: an ASR worker follows every utterance it hears, ten chunks a
second each, and per chunk those cost about as much as deciding what to send. Here a
pushed entry goes to a deque, and the one waiting handler is woken through one future.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from types import TracebackType

from shared.messages import InputChunk, MessageError, decode
from shared.mux import Entry, InputIdle, StreamMux

log = logging.getLogger(__name__)


class UtteranceInput:
    """``async with UtteranceInput(mux, key, idle_timeout, read) as chunks``, then
    ``await chunks.next()`` until the end marker."""

    def __init__(
        self, mux: StreamMux, key: str, idle_timeout: float, read: Sequence[Entry] = ()
    ) -> None:
        self._mux = mux
        self._key = key
        self._idle_timeout = idle_timeout
        self._entries: deque[tuple[str, dict[bytes, bytes]]] = deque(read)
        self._from_id = read[-1][0] if read else "0-0"
        self._loop = asyncio.get_running_loop()
        self._last_entry = self._loop.time()
        self._idle = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> UtteranceInput:
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
