"""Is the microphone hearing the reply itself? Acoustic echo, judged against the reply's audio.

Many phones on speaker, laptops and apps recording without echo cancellation send the
reply back into the microphone a little later and quieter. The gateway relays that
reply's audio, so it has what no client-side canceller is given: the exact signal. To
judge a stretch of microphone audio it searches the reply (all of it sent so far: the
client may buffer seconds ahead, so where it is playing is not known exactly) for the
best-aligned stretch (GCC-PHAT, a cross-correlation that keeps only phase and so stays
sharp through a room's colouring), fits a short filter from that stretch to the
microphone (least squares, 4 ms of taps: the loudspeaker and room) and measures how
much of the microphone's energy the fitted echo explains (echo return loss enhancement,
ERLE). The reply's own echo is explained to 18-34 dB at -20 to -6 dB and 100-200 ms of
delay; a person talking, even over that echo at -6 dB, to at most 2 dB; noise to 0 dB.
8 dB or more is echo.

Runs only on frames of speech while a reply plays, at 8 kHz. Once the echo is found the
next stretch is first looked for where the last one ended plus the audio since (about
1 ms); a full search of a 12 s reply costs about 8-15 ms on this project's 2-core test
machine. Decoding the reply (miniaudio) happens once per new chunk, on the same thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import miniaudio
import numpy as np

log = logging.getLogger(__name__)

RATE = 8000  # Hz the comparison runs at (speech energy lies below 4 kHz)
ECHO_MIN_ERLE_DB = 8.0  # the fitted echo explains this much of the microphone: echo
MAX_REFERENCE_SECONDS = 120  # a longer reply: only its newest part is searched
_TAPS = 32  # 4 ms of filter at 8 kHz, from 1 ms before the best lag
_SILENT_RMS = 30.0  # int16 RMS below which there is nothing to judge
_SEARCH = RATE * 3 // 10  # around where the echo is expected: 300 ms either side


@dataclass
class ReplyAudio:
    """The audio of one reply as the gateway relayed it, decoded only when asked."""

    turn_id: str
    audio_format: str = "mp3"
    sample_rate: int = 24000
    chunks: list[bytes] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)  # each chunk's sentence (1-based)
    size: int = 0
    _decoded: np.ndarray | None = None
    _decoded_size: int = -1

    def add(self, data: bytes, audio_format: str, sample_rate: int, sentence: int = 0) -> None:
        if self.size > MAX_REFERENCE_SECONDS * max(sample_rate, 8000) * 2:
            return  # beyond what is searched: keep memory bounded
        self.audio_format, self.sample_rate = audio_format, sample_rate or self.sample_rate
        self.chunks.append(data)
        self.sentences.append(sentence)
        self.size += len(data)

    def sentence_at(self, played_ms: float) -> int:
        """The sentence playing ``played_ms`` into the reply (chunks are even in time per
        byte within a reply: constant bit rate or raw samples)."""
        if not self.chunks:
            return 1
        duration_ms = len(self.pcm()) * 1000 / RATE
        target = self.size * min(1.0, max(0.0, played_ms) / max(duration_ms, 1.0))
        position = 0
        for data, sentence in zip(self.chunks, self.sentences, strict=True):
            position += len(data)
            if position >= target:
                return max(1, sentence)
        return max(1, self.sentences[-1])

    def pcm(self) -> np.ndarray:
        """The reply so far as float32 samples at ``RATE`` (cached until more arrives)."""
        size = self.size  # judged on a worker thread while more chunks may arrive
        if self._decoded is None or self._decoded_size != size:
            chunks = list(self.chunks)
            decoded = _decode(chunks, self.audio_format, self.sample_rate)
            self._decoded, self._decoded_size = decoded, sum(len(c) for c in chunks)
        return self._decoded


def _decode(chunks: list[bytes], audio_format: str, sample_rate: int) -> np.ndarray:
    try:
        if audio_format == "mp3":
            decoded = miniaudio.decode(
                b"".join(chunks),
                output_format=miniaudio.SampleFormat.SIGNED16,
                nchannels=1,
                sample_rate=RATE,
            )
            return np.asarray(decoded.samples, dtype=np.float32)
        if audio_format == "wav":  # each chunk is a small WAV file: 44-byte header + PCM
            raw = b"".join(chunk[44:] for chunk in chunks)
        else:
            raw = b"".join(chunks)
    except miniaudio.DecodeError:
        log.debug("reply audio could not be decoded for the echo check")
        return np.zeros(0, dtype=np.float32)
    samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype=np.int16).astype(np.float32)
    if sample_rate == RATE or not len(samples):
        return samples
    positions = np.arange(0, len(samples), sample_rate / RATE)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def to_rate(pcm16k: bytes) -> np.ndarray:
    """16 kHz s16le microphone audio as float32 at ``RATE`` (a 2-tap average, then every
    other sample: enough against aliasing for this comparison)."""
    samples = np.frombuffer(pcm16k[: len(pcm16k) - len(pcm16k) % 4], dtype=np.int16)
    pairs = samples.astype(np.float32).reshape(-1, 2)
    return pairs.mean(axis=1)


def echo_return_db(
    mic: np.ndarray, reference: np.ndarray, near: int | None = None
) -> tuple[float, int | None]:
    """How much of ``mic``'s energy a short filter of the best-aligned stretch of
    ``reference`` explains, in dB (0: none of it; silence: 0), and where in ``reference``
    the end of ``mic`` fell (None: not judged). With ``near`` (where it was expected to
    end) only the stretch around it is searched first: a few ms instead of tens."""
    if len(mic) < RATE // 10 or not len(reference):
        return 0.0, None
    mic = mic - mic.mean()
    if float(np.sqrt(np.mean(mic * mic))) < _SILENT_RMS:
        return 0.0, None
    # silence around the reply: the microphone may have caught its very beginning or end
    edge = np.zeros(len(mic), dtype=np.float32)
    padded = np.concatenate([edge, reference, edge])
    if near is not None:
        low = max(0, near - _SEARCH)  # the window was expected to start at ``near`` there
        high = min(len(padded), near + len(mic) + _SEARCH)
        if high - low > len(mic):
            lag = low + _best_lag(mic, padded[low:high])
            explained = _explained_db(mic, padded, lag)
            if explained >= ECHO_MIN_ERLE_DB:
                return explained, lag  # the window's end, in ``reference``'s indexes
    lag = _best_lag(mic, padded)
    return _explained_db(mic, padded, lag), lag


def _explained_db(mic: np.ndarray, reference: np.ndarray, lag: int) -> float:
    start = max(0, lag - _TAPS // 8)
    # columns: the reference delayed by 0.._TAPS-1 samples from ``start``
    needed = start + len(mic) + _TAPS
    ref = reference[start:needed]
    if len(ref) < needed - start:
        ref = np.pad(ref, (0, needed - start - len(ref)))
    rows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(ref, len(mic))[:_TAPS])
    gram = rows @ rows.T  # least squares by its normal equations: 32 x 32, a lightly damped
    gram += np.eye(_TAPS, dtype=gram.dtype) * (1e-3 * float(np.trace(gram)) / _TAPS + 1e-6)
    taps = np.linalg.solve(gram, rows @ mic)
    residual = mic - taps @ rows
    energy = float(np.dot(mic, mic))
    left = float(np.dot(residual, residual)) + 1e-9
    return max(0.0, 10.0 * float(np.log10(energy / left)))


def _best_lag(mic: np.ndarray, reference: np.ndarray) -> int:
    """Where in ``reference`` ``mic`` fits best (GCC-PHAT over every position)."""
    size = 1 << int(np.ceil(np.log2(len(mic) + len(reference))))
    cross = np.fft.rfft(reference, size) * np.conj(np.fft.rfft(mic, size))
    correlation = np.fft.irfft(cross / (np.abs(cross) + 1e-9), size)
    return int(np.argmax(correlation[: len(reference) - len(mic) + 1]))


@dataclass
class EchoJudge:
    """Judges stretches of one session's microphone, following the echo once found: the
    next stretch is searched first where the last one ended plus the audio since."""

    expected_end: int | None = None  # in the reply's samples at ``RATE``
    turn_id: str = ""

    def heard(self, pcm16k_bytes: int) -> None:
        """Microphone audio arrived: the echo, if any, moved on as much."""
        if self.expected_end is not None:
            self.expected_end += pcm16k_bytes // 4

    def is_echo(self, mic_pcm16k: bytes, reply: ReplyAudio | None) -> bool | None:
        """Whether this microphone audio is (mostly) the reply coming back; None: too
        quiet to tell (nothing a person said there either)."""
        if reply is None or not reply.size:
            return False
        if reply.turn_id != self.turn_id:
            self.turn_id, self.expected_end = reply.turn_id, None
        mic = to_rate(mic_pcm16k)
        explained, end = echo_return_db(mic, reply.pcm(), self.expected_end)
        if end is None:
            return None
        if explained < ECHO_MIN_ERLE_DB and len(mic) >= RATE // 5:
            # the player may have run dry or skipped inside the stretch (no single place
            # in the reply explains all of it): judge its newest part on its own
            explained, end = echo_return_db(mic[len(mic) // 2 :], reply.pcm())
        echo = explained >= ECHO_MIN_ERLE_DB
        self.expected_end = end if echo and end is not None else self.expected_end
        return echo


def is_echo(mic_pcm16k: bytes, reply: ReplyAudio | None) -> bool:
    """Whether this microphone audio is (mostly) the reply coming back (a full search)."""
    return bool(EchoJudge().is_echo(mic_pcm16k, reply))
