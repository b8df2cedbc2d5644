"""The one exception type every cloud TTS engine raises, so the fallback chain and the
worker handle all providers alike.

Messages are written for an operator: they name the provider and what went wrong, never
the text being spoken or a key.
"""

from __future__ import annotations


class TtsProviderError(RuntimeError):
    """A TTS provider could not (or stopped being able to) speak a sentence."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.reason = message
