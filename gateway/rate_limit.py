"""Per-session rate limits: audio no faster than a few times real time, few requests.

A token bucket per session and kind: a client may burst (a phone flushing a buffered
second of audio after a network hiccup) but not sustain more than the rate. Refusals
never touch other sessions: each bucket belongs to one connection.

Every request that starts paid model calls draws on one bucket (``COMMANDS_PER_MINUTE``):
a typed ``voice_command``, a spoken turn (when its utterance opens), a ``cancel``, and a
reply started early during a pause (``PREEMPTIVE_REPLY``) that is then discarded (the
user went on speaking, the final transcript differed): one that is used is the turn's own
reply, already counted. A
discarded reply's calls were made when it is counted, so it is never refused: it is
charged, and the next request waits for the bucket to refill.
"""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate_per_second: float, burst: float) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` if available; False (nothing spent) when over the limit."""
        if self.rate <= 0:
            return True  # unlimited
        self._refill()
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True

    def charge(self, amount: float = 1.0) -> None:
        """Spend ``amount`` even if that leaves a debt (at most a burst's worth)."""
        if self.rate <= 0:
            return
        self._refill()
        self._tokens = max(-self.burst, self._tokens - amount)


class SessionLimits:
    """Audio at ``audio_speed`` x real time after a burst of ``burst_seconds`` of audio,
    and ``commands_per_minute`` requests after a burst of 10."""

    def __init__(self, audio_speed: float, burst_seconds: float, commands_per_minute: int):
        self.audio_speed = audio_speed
        self.commands_per_minute = commands_per_minute
        self._audio = TokenBucket(audio_speed, burst_seconds)
        self._commands = TokenBucket(commands_per_minute / 60.0, min(10, commands_per_minute))

    def allow_audio(self, seconds: float) -> bool:
        return self._audio.take(seconds)

    def allow_command(self) -> bool:
        """A typed or spoken request, or a cancel."""
        return self.commands_per_minute <= 0 or self._commands.take()

    def charge_discarded_reply(self) -> None:
        """A reply started before the end of speech, then discarded: counted, never
        refused (its model calls were made)."""
        if self.commands_per_minute > 0:
            self._commands.charge()
