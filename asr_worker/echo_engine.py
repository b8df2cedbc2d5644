"""A recogniser that does no recognition: for measuring transport cost, not for users.

Each fed chunk yields the partial ``"<n>"`` (chunks received so far), so a benchmark can
match every partial to the audio chunk that caused it and time the whole round trip
through gateway, Redis and worker without any engine cost. ``ASR_PROVIDER=echo``.
"""

from __future__ import annotations


class _EchoStream:
    blocking = False  # feed() is trivial: the worker calls it on its event loop

    def __init__(self) -> None:
        self._chunks = 0

    def feed(self, pcm: bytes) -> str | None:
        self._chunks += 1
        return str(self._chunks)

    def finish(self) -> str:
        return f"echo {self._chunks} chunks"

    def close(self) -> None:
        pass


class EchoAsrEngine:
    name = "echo"
    blocking = False  # open_stream() is trivial too
    sample_rate = 16000

    def open_stream(self) -> _EchoStream:
        return _EchoStream()
