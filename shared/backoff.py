"""The one reconnect backoff of every loop that waits for Redis to come back (the stream
mux, its bells, a worker's job reads, the control channel).

Delays are redis-py's own equal-jitter backoff (half fixed, half random): a process
never hammers a Redis that is restarting, and a hundred processes that lost it at the
same moment do not come back in step. The first failure is quiet: a read that fails
once is usually a blip (or Redis going down a moment before this process is told to
stop, as with ``compose down``); a second one in a row is worth a log line.
"""

from __future__ import annotations

import asyncio

from redis.backoff import EqualJitterBackoff

FIRST_S = 0.05


class Backoff:
    """Delays of 50-100 ms after a first failure, doubling up to ``longest_s``."""

    def __init__(self, longest_s: float = 4.0) -> None:
        # equal jitter of base * 2**failures: [50, 100] ms for the first failure
        self._policy = EqualJitterBackoff(cap=longest_s, base=FIRST_S)
        self.failures = 0

    def reset(self) -> None:
        """A success: the next failure is a first one again."""
        self.failures = 0

    @property
    def repeated(self) -> bool:
        """More than one failure in a row (worth telling someone)."""
        return self.failures > 1

    def next_delay(self) -> float:
        """Count a failure; the delay before the next attempt, in seconds."""
        self.failures += 1
        return self._policy.compute(self.failures)

    async def wait(self) -> float:
        """Count a failure and sleep its delay; returns the delay slept."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
