"""Offline streaming recognition with pocketsphinx, tuned for spoken news requests.

Why this shape (espeak speech; held-out figures from bench/asr_wer.py):

- A news-request grammar (``data/news.gram``) with a dictionary of its words
  (``data/news.dict``): WER 0.12 on held-out requests, against 0.44 for the bundled
  open-vocabulary model.
- Low-level dither on the input: runs of exact digital zeros (padding, noise gates)
  made the decoder swallow word endings ("headlines" -> "headline"); WER 0.23 -> 0.10
  on the development set.
- The live cepstral mean is updated after every chunk and carried from one utterance
  to the next across the pool, so a stream starts from the level of recent speech.
- Out-of-domain speech: a grammar always answers with some news command. An utterance is
  rejected when the grammar cannot end in an accepting state, or when its words fit the
  audio much worse than free phone recognition does (a likelihood ratio per frame, from
  a small phone-loop decoder fed the same chunks). A rejected utterance is decoded again
  with the open-vocabulary model (``fallback=True``) or returns "".
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from asr_worker.completeness import is_complete
from asr_worker.pocketsphinx_pool import (
    DEFAULT_CMN_INIT,
    GRAMMAR_PATH,
    SAMPLE_RATE,
    DecoderPool,
    grammar_decoder,
    open_decoder,
    phone_loop_decoder,
)
from shared.audio import rms_dbfs

log = logging.getLogger(__name__)

Mode = Literal["grammar", "open"]

# Acoustic log-likelihood ratio (grammar words vs free phones, pocketsphinx log units per
# frame) below which the grammar's answer is rejected. Development set (espeak, two
# voices): -60 rejected 3.4 % of news requests and 38 % of out-of-domain sentences
# (-64: 2.5 % and 22 %; -56: 6.4 % and 50 %). Synthetic speech fits every model poorly,
# so the two groups overlap more than they should with natural speech.
DEFAULT_MIN_SCORE = -60.0
FALLBACK_MAX_SECONDS = 30.0  # audio kept per utterance for the open-vocabulary decode


@dataclass(slots=True)
class _Recogniser:
    """What one stream borrows: the grammar decoder and, when scoring, its phone loop."""

    decoder: Any
    phones: Any | None


class _CepstralMean:
    """The most recent speaker-level cepstral mean, shared by the streams of one engine."""

    def __init__(self, initial: str) -> None:
        self._value = initial
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            return self._value

    def set(self, value: str) -> None:
        with self._lock:
            self._value = value


def _words(hypothesis: Any) -> str:
    """Lower-case words of a hypothesis without fillers (<sil>, [NOISE], +SPN+...)."""
    if hypothesis is None:
        return ""
    kept = [w for w in hypothesis.hypstr.split() if w[0] not in "<[+("]
    return " ".join(kept).lower()


def _is_filler(word: str) -> bool:
    return word[0] in "<[+(" or word == "SIL"


class PocketsphinxStream:
    """One utterance on a borrowed decoder; used by one thread at a time."""

    def __init__(self, engine: PocketsphinxEngine, recogniser: _Recogniser) -> None:
        self._engine = engine
        self._rec: _Recogniser | None = recogniser
        self._partial = ""
        self._odd_byte = b""
        self._loudest = float("-inf")
        self._audio = bytearray() if engine.keeps_audio else None
        self._rng = np.random.default_rng(0)  # same audio, same transcript
        self.score: float | None = None  # likelihood ratio of the final, when measured
        self.complete: bool | None = None  # is the latest partial a whole request?
        self.rejected = False
        for decoder in self._decoders():
            decoder.set_cmn(engine.cepstral_mean.get())
            decoder.start_utt()

    def _decoders(self) -> list[Any]:
        if self._rec is None:
            return []
        return [d for d in (self._rec.decoder, self._rec.phones) if d is not None]

    def feed(self, pcm: bytes) -> str | None:
        if self._rec is None:
            raise RuntimeError("stream already finished or closed")
        pcm = self._odd_byte + pcm
        self._odd_byte = pcm[len(pcm) - len(pcm) % 2 :]
        samples = np.frombuffer(pcm[: len(pcm) - len(self._odd_byte)], dtype="<i2")
        if samples.size == 0:
            return None
        self._loudest = max(self._loudest, rms_dbfs(samples.tobytes()))
        audio = self._dither(samples)
        if self._audio is not None and len(self._audio) < FALLBACK_MAX_SECONDS * SAMPLE_RATE * 2:
            self._audio += audio
        try:
            for decoder in self._decoders():
                decoder.process_raw(audio, False, False)
                decoder.get_cmn(True)  # adapt the mean within the utterance, not only after it
            if self._loudest < self._engine.silence_dbfs:
                return None  # the best path through leading silence is a guessed word
            text = _words(self._rec.decoder.hyp())
        except Exception:
            self._discard()
            raise
        if text and text != self._partial:
            self._partial = text
            self.complete = is_complete(text, self._engine.grammar_accepts(text))
            return text
        return None

    def _dither(self, samples: np.ndarray) -> bytes:
        if not self._engine.dither:
            return samples.tobytes()
        noisy = samples + self._rng.normal(0.0, self._engine.dither, samples.size)
        return np.clip(np.rint(noisy), -32768, 32767).astype("<i2").tobytes()

    def finish(self) -> str:
        if self._rec is None:
            raise RuntimeError("stream already finished or closed")
        try:
            for decoder in self._decoders():
                decoder.end_utt()
            text, cmn = self._result(), self._rec.decoder.get_cmn()
        except Exception:
            self._discard()
            raise
        self._release()
        if self.rejected:
            text = self._engine.decode_rejected(bytes(self._audio or b""), cmn)
        return text

    def _result(self) -> str:
        assert self._rec is not None
        if self._loudest < self._engine.silence_dbfs:
            return ""  # nothing loud enough to be speech: skip scoring and fallback
        self._engine.cepstral_mean.set(self._rec.decoder.get_cmn())
        text = _words(self._rec.decoder.hyp())
        if self._engine.mode == "open":
            return text
        if self._rec.phones is not None and text:
            self.score = self._engine.likelihood_ratio(self._rec.decoder, self._rec.phones)
        min_score = self._engine.min_score
        low = self.score is not None and min_score is not None and self.score < min_score
        if text and not low:
            return text
        self.rejected = True
        log.debug("grammar rejected an utterance (score %s)", self.score)
        return ""

    def close(self) -> None:
        """Give the decoder back without a result; safe to call after ``finish``."""
        if self._rec is None:
            return
        try:
            for decoder in self._decoders():
                decoder.end_utt()
        except Exception:
            self._discard()
            raise
        self._release()

    def _release(self) -> None:
        if self._rec is not None:
            self._engine.pool.release(self._rec)
            self._rec = None

    def _discard(self) -> None:
        if self._rec is not None:
            self._engine.pool.discard()
            self._rec = None


class PocketsphinxEngine:
    """``AsrEngine`` over pocketsphinx 5.

    ``mode="grammar"`` (default) recognises news requests; ``mode="open"`` uses the
    bundled general English model only. ``fallback`` decodes what the grammar rejects
    with the general model instead of returning "". ``min_score=None`` skips the phone
    loop (saves about 0.065 real-time factor, rejects only what the grammar cannot parse).
    """

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE
    languages = ("en",)  # the wheel's acoustic and language models are US English

    def __init__(
        self,
        mode: Mode = "grammar",
        *,
        fallback: bool = True,
        decoder_pool_size: int = 2,
        min_score: float | None = DEFAULT_MIN_SCORE,
        cmn_init: str = DEFAULT_CMN_INIT,
        dither: float = 32.0,
        silence_dbfs: float = -50.0,
        acquire_timeout: float | None = None,
        preload: bool = True,
    ) -> None:
        if mode not in ("grammar", "open"):
            raise ValueError(f"mode must be 'grammar' or 'open', not {mode!r}")
        self.mode = mode
        self.fallback = fallback and mode == "grammar"
        self.min_score = min_score
        self.dither = dither
        self.silence_dbfs = silence_dbfs
        self.acquire_timeout = acquire_timeout
        self.cepstral_mean = _CepstralMean(cmn_init)
        self.keeps_audio = self.fallback
        self.pool: DecoderPool[_Recogniser] = DecoderPool(
            self._new_recogniser, decoder_pool_size, mode
        )
        # One open-vocabulary decoder (90 MB) for rejected utterances, loaded on first use.
        self.fallback_pool: DecoderPool[Any] = DecoderPool(
            lambda: open_decoder(cmn_init), 1, "fallback"
        )
        self._grammar_fsg: Any | None = None  # the grammar alone, to ask what it accepts
        self._grammar_lock = threading.Lock()
        if preload:
            self.pool.preload()
            self.grammar_accepts("")  # compile the grammar's acceptor now, not mid-request

    def _new_recogniser(self) -> _Recogniser:
        cmn = self.cepstral_mean.get()
        if self.mode == "open":
            return _Recogniser(open_decoder(cmn), None)
        phones = phone_loop_decoder(cmn) if self.min_score is not None else None
        return _Recogniser(grammar_decoder(cmn), phones)

    def grammar_accepts(self, text: str) -> bool | None:
        """Whether the news grammar can end after ``text`` (None in open mode)."""
        if self.mode != "grammar":
            return None
        from pocketsphinx import FsgModel, LogMath

        with self._grammar_lock:  # one compile (0.2 s), then about 0.3 ms per question
            if self._grammar_fsg is None:
                self._grammar_fsg = FsgModel.jsgf_read_file(str(GRAMMAR_PATH), LogMath(), 1.0)
            return bool(self._grammar_fsg.accept(text))

    def open_stream(self) -> PocketsphinxStream:
        return PocketsphinxStream(self, self.pool.acquire(self.acquire_timeout))

    @staticmethod
    def likelihood_ratio(decoder: Any, phones: Any) -> float | None:
        """Grammar words minus free phones, acoustic log-likelihood per frame of speech.

        Scored over the span of the grammar's words only, so leading and trailing
        silence (whose length depends on the client) does not dilute it.
        """
        words = [s for s in decoder.seg() if not _is_filler(s.word)]
        if not words:
            return None
        first, last = words[0].start_frame, words[-1].end_frame
        inside = [s for s in phones.seg() if first <= (s.start_frame + s.end_frame) / 2 <= last]
        logmath = decoder.get_logmath()
        total = 0.0
        for sign, segments in ((1, words), (-1, inside)):
            for segment in segments:
                if segment.ascore <= 0.0 or not math.isfinite(segment.ascore):
                    return None  # underflow on a very long segment: no verdict
                total += sign * logmath.log(segment.ascore)
        return total / (last - first + 1)

    def decode_rejected(self, pcm: bytes, cmn: str) -> str:
        """Second opinion from the open-vocabulary model, or "" without fallback."""
        if not self.fallback or not pcm:
            return ""
        decoder = self.fallback_pool.acquire(self.acquire_timeout)
        try:
            decoder.set_cmn(cmn)  # the mean the grammar decoder reached on this speaker
            decoder.start_utt()
            decoder.process_raw(pcm, False, False)
            decoder.end_utt()
            text = _words(decoder.hyp())
        except Exception:
            self.fallback_pool.discard()
            raise
        self.fallback_pool.release(decoder)
        return text
