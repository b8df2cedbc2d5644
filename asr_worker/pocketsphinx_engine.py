"""Offline streaming recognition with pocketsphinx and a news-command grammar.

Open-vocabulary pocketsphinx mishears most news requests (WER 0.87 on synthetic speech);
a JSGF grammar of news requests with a dictionary filtered to its words recognises them
reliably (``asr_worker/data``). Decoders are pooled: loading one takes a fraction of a
second, an utterance only ``start_utt``/``end_utt``. Lattice best-path search is off:
with a grammar this large it made ``end_utt`` take seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

log = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
SAMPLE_RATE = 16000
WARM_UP_SENTENCE = "Good morning, what are the latest news headlines in the world today?"


def _new_decoder(mode: str):
    from pocketsphinx import Decoder

    if mode == "grammar":
        decoder = Decoder(
            samprate=SAMPLE_RATE,
            jsgf=str(DATA / "news.gram"),
            dict=str(DATA / "news.dict"),
            bestpath=False,
            logfn="/dev/null",
        )
    else:
        decoder = Decoder(samprate=SAMPLE_RATE, logfn="/dev/null")
    _warm_up(decoder)
    return decoder


def _warm_up(decoder) -> None:
    """Decode one spoken sentence so the live cepstral mean starts near speech.

    A fresh decoder starts from a generic mean and adapts during its first utterance;
    on a short command that costs the first user a misrecognition. The sentence is
    spoken by the bundled offline voice, so no data file is needed.
    """
    try:
        from shared.audio import resample_pcm16
        from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
    except ImportError:  # pragma: no cover - both ship in this distribution
        return
    pcm = synthesize_pcm(WARM_UP_SENTENCE)
    decoder.start_utt()
    decoder.process_raw(resample_pcm16(pcm, espeak_sample_rate(), SAMPLE_RATE), False, True)
    decoder.end_utt()


class _Stream:
    """One utterance on a pooled decoder."""

    def __init__(self, engine: PocketsphinxEngine, decoder) -> None:
        self._engine = engine
        self._decoder = decoder
        self._last = ""
        self._decoder.start_utt()

    def feed(self, pcm: bytes) -> str | None:
        self._decoder.process_raw(pcm, False, False)
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text and text != self._last:
            self._last = text
            return text
        return None

    def finish(self) -> str:
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        self._release()
        return text

    def close(self) -> None:
        if self._decoder is not None:
            try:
                self._decoder.end_utt()
            except RuntimeError:
                pass
            self._release()

    def _release(self) -> None:
        if self._decoder is not None:
            self._engine._pool.put(self._decoder)
            self._decoder = None


class PocketsphinxEngine:
    """``AsrEngine`` over pocketsphinx 5; ``mode`` is ``grammar`` (default) or ``open``."""

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE

    def __init__(self, mode: str = "grammar", decoder_pool_size: int = 2) -> None:
        self.mode = mode
        self._pool: queue.Queue = queue.Queue()
        self._created = 0
        self._max = decoder_pool_size
        self._lock = threading.Lock()
        self._pool.put(_new_decoder(mode))  # load now: fail at start, not on the first call
        self._created = 1

    def open_stream(self) -> _Stream:
        try:
            decoder = self._pool.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._created < self._max
                self._created += grow
            decoder = _new_decoder(self.mode) if grow else self._pool.get()
        return _Stream(self, decoder)
