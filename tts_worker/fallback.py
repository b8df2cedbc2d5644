"""A chain of TTS engines (``TTS_FALLBACK=edge,espeak``): when one fails, the next speaks.

What "the rest of the reply" means, sentence by sentence:

* an engine that fails or goes silent for ``timeout`` seconds *before any audio* of a
  sentence: the same sentence is spoken by the next engine, so nothing is lost;
* an engine that fails *after* some of a sentence's audio went out: that sentence is not
  re-spoken (the listener would hear its beginning twice); the reply goes on with the
  next sentence;
* an engine that failed is skipped for the rest of that reply (state kept by
  ``begin_reply``), so a dead service costs its timeout once per reply, not per
  sentence. If every engine has failed in a reply, the next sentence tries them all again.

Failures are counted per engine in ``failures`` (for metrics) and logged with the
reason, never the text.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from shared import metrics
from shared.engines import AudioSegment, TtsEngine, Voice
from tts_worker.errors import TtsProviderError

log = logging.getLogger(__name__)


class FallbackTts:
    """``TtsEngine`` over an ordered chain of engines; see the module docstring."""

    def __init__(self, engines: Sequence[TtsEngine], timeout: float = 5.0) -> None:
        if not engines:
            raise ValueError("a TTS fallback chain needs at least one engine")
        self.engines = tuple(engines)
        self.timeout = timeout
        self.name = "fallback(" + ",".join(engine.name for engine in self.engines) + ")"
        self.failures: Counter[str] = Counter()

    def begin_reply(self) -> _ReplyChain:
        """A view for one reply, remembering which engines failed during it."""
        return _ReplyChain(self)

    def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        """One sentence on its own (no memory of failures across calls)."""
        return self.begin_reply().synthesize(text, voice)


class _ReplyChain:
    def __init__(self, chain: FallbackTts) -> None:
        self.chain = chain
        self.name = chain.name
        self.failed: set[str] = set()

    async def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        engines = [e for e in self.chain.engines if e.name not in self.failed]
        if not engines:  # every engine failed in this reply already: give them another go
            self.failed.clear()
            engines = list(self.chain.engines)
        last_error: Exception | None = None
        failed_engine: str | None = None
        for engine in engines:
            if failed_engine is not None:
                metrics.PROVIDER_FALLBACKS.labels("tts", failed_engine, engine.name).inc()
            delivered = False
            try:
                async for segment in self._guarded(engine, text, voice):
                    delivered = True
                    yield segment
                return
            except Exception as exc:
                self._record(engine, exc, delivered)
                last_error, failed_engine = exc, engine.name
                if delivered:
                    return  # part of the sentence was heard: go on with the next sentence
        raise TtsProviderError(self.name, "every engine failed on this sentence") from last_error

    async def _guarded(
        self, engine: TtsEngine, text: str, voice: Voice
    ) -> AsyncIterator[AudioSegment]:
        """The engine's segments, failing if it stays silent for ``timeout`` seconds."""
        segments = aiter(engine.synthesize(text, voice))
        try:
            while True:
                try:
                    async with asyncio.timeout(self.chain.timeout):
                        segment = await anext(segments)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    timeout = self.chain.timeout
                    raise TtsProviderError(engine.name, f"no audio for {timeout:g} s") from exc
                yield segment
        finally:
            close = getattr(segments, "aclose", None)
            if close is not None:
                await close()

    def _record(self, engine: TtsEngine, exc: Exception, delivered: bool) -> None:
        self.chain.failures[engine.name] += 1
        metrics.PROVIDER_FAILURES.labels("tts", engine.name).inc()
        self.failed.add(engine.name)
        reason = str(exc) if isinstance(exc, TtsProviderError) else type(exc).__name__
        where = "mid-sentence" if delivered else "before audio"
        log.warning("TTS engine %s failed %s (%s); falling back", engine.name, where, reason)
