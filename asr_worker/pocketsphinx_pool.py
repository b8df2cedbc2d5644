"""Pocketsphinx decoders: how each kind is configured, and a pool that lends them out.

Loading a decoder takes 0.3-0.4 s and 35-90 MB; starting an utterance on a loaded one
(``start_utt``/``end_utt``) takes microseconds. So decoders are created on demand up to
a limit and reused, each serving one stream at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DATA_DIR = Path(__file__).parent / "data"
GRAMMAR_PATH = DATA_DIR / "news.gram"
DICTIONARY_PATH = DATA_DIR / "news.dict"

# Start value of the live cepstral mean. Its first coefficient tracks loudness: the
# library default (40) fits quiet audio, speech recorded at a normal level (about
# -26 dBFS) sits near 55-60, and a wrong start value costs the first words of an
# utterance (measured: WER 0.26 with 40, 0.14 with 55, on a decoder's first utterance).
# Only the level term is set; the spectral terms adapt during the utterance.
DEFAULT_CMN_INIT = "55,3,-1"

_COMMON: dict[str, Any] = {"samprate": SAMPLE_RATE, "loglevel": "FATAL"}

T = TypeVar("T")


def _model_file(name: str) -> str:
    from pocketsphinx import get_model_path

    return str(Path(get_model_path()) / "en-us" / name)


def grammar_decoder(cmn_init: str) -> Any:
    """The news grammar. Lattice best-path is off: with a grammar it can return word
    sequences the grammar does not allow (measured: "what's the latest new")."""
    from pocketsphinx import Decoder

    return Decoder(
        jsgf=str(GRAMMAR_PATH),
        dict=str(DICTIONARY_PATH),
        bestpath=False,
        cmninit=cmn_init,
        **_COMMON,
    )


def phone_loop_decoder(cmn_init: str) -> Any:
    """Free phone recognition: the yardstick for how well the grammar's words fit the
    audio. The small dictionary is passed only to avoid loading the full one."""
    from pocketsphinx import Decoder

    return Decoder(
        allphone=_model_file("en-us-phone.lm.bin"),
        dict=str(DICTIONARY_PATH),
        bestpath=False,
        cmninit=cmn_init,
        **_COMMON,
    )


def open_decoder(cmn_init: str) -> Any:
    """The bundled open-vocabulary en-us model and full dictionary (about 90 MB)."""
    from pocketsphinx import Decoder

    return Decoder(cmninit=cmn_init, **_COMMON)


class DecoderPool(Generic[T]):
    """Up to ``size`` items made by ``factory`` on first need, lent to one user at a time.

    ``acquire`` blocks while all are lent out: under load, streams wait for a decoder
    instead of loading more than the memory budget allows.
    """

    def __init__(self, factory: Callable[[], T], size: int, name: str) -> None:
        if size < 1:
            raise ValueError("a decoder pool needs at least one decoder")
        self._factory = factory
        self._size = size
        self._name = name
        self._idle: list[T] = []
        self._created = 0
        self._cond = threading.Condition()

    @property
    def idle(self) -> int:
        with self._cond:
            return len(self._idle)

    @property
    def created(self) -> int:
        with self._cond:
            return self._created

    def preload(self) -> None:
        """Create one item now, so a broken install fails at start, not on the first call."""
        self.release(self.acquire())

    def acquire(self, timeout: float | None = None) -> T:
        with self._cond:
            if not self._cond.wait_for(lambda: self._idle or self._created < self._size, timeout):
                raise TimeoutError(f"no {self._name} decoder free after {timeout} s")
            if self._idle:
                return self._idle.pop()
            self._created += 1  # reserve the slot; load outside the lock
        try:
            started = time.perf_counter()
            item = self._factory()
        except BaseException:
            self.discard()
            raise
        log.info("loaded %s decoder in %.2f s", self._name, time.perf_counter() - started)
        return item

    def release(self, item: T) -> None:
        with self._cond:
            self._idle.append(item)
            self._cond.notify()

    def discard(self) -> None:
        """Forget a lent item whose state is unknown (an error mid-utterance)."""
        with self._cond:
            self._created -= 1
            self._cond.notify()
