"""Reply audio in the format the client asked for, whatever each engine produced.

One reply is one stream: one format and one sample rate, even when the fallback chain
switches engines mid-reply (edge's 24 kHz MP3, then espeak's 22.05 kHz PCM). The reply's
rate is the rate of its first audio; later audio is resampled to it (soxr, streaming)
and, for MP3 output, encoded with the reply's one encoder. Conversion happens only where
needed: MP3 at the reply rate passes through untouched (the common edge -> mp3 path), and
PCM is never encoded when PCM was asked for.

Output formats, per ``tts_chunk``:

* ``mp3``: whole MPEG audio frames, at most ``max_bytes`` per chunk (one frame may
  exceed it); every chunk can be decoded on its own.
* ``pcm16``: raw signed 16-bit little-endian mono PCM, whole samples; the chunk's
  ``sample_rate`` field gives the rate. Concatenate the chunks to get the reply.
* ``wav``: every chunk is a complete small WAV file (44-byte header, then that chunk's
  PCM), so a client can play each chunk as it arrives, like an MP3 chunk. The reply is
  the concatenation of the chunks' PCM (skip each header).

Engines must yield MP3 segments made of whole frames (``FrameCutter`` in the engine).
"""

from __future__ import annotations

from typing import Literal

import miniaudio
import numpy as np
import soxr

from shared.audio import pcm16_to_wav
from shared.engines import AudioSegment
from tts_worker.mp3 import FrameCutter, Mp3Encoder, frame_length, split_frames

OutputFormat = Literal["mp3", "pcm16", "wav"]
FORMATS: tuple[OutputFormat, ...] = ("mp3", "pcm16", "wav")
WAV_HEADER_BYTES = 44
_PRIMER_BYTES = 1024  # > 511-byte bit reservoir + one frame of filter history


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = frame_length(data[pos : pos + 4]) or len(data) - pos
        out.append(data[pos : pos + length])
        pos += length
    return out


def _samples_per_frame(header: bytes) -> int:
    return 1152 if (header[1] >> 3) & 0x3 == 3 else 576  # MPEG-1 vs MPEG-2/2.5


class Mp3Decoder:
    """MP3 frames in, PCM out, piece by piece as they arrive.

    Decoding each piece on its own would click at every boundary (each frame leans on
    the bit reservoir and the filter state of the frames before it), so each piece is
    decoded after a primer of the previous frames and only the new frames' samples kept;
    measured sample-identical to decoding the whole stream at once.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._primer: list[bytes] = []

    def decode(self, data: bytes) -> bytes:
        frames = _frames(data)
        if not frames:
            return b""
        wanted = len(frames) * _samples_per_frame(frames[0])
        decoded = miniaudio.decode(
            b"".join(self._primer) + data,
            output_format=miniaudio.SampleFormat.SIGNED16,
            nchannels=1,
            sample_rate=self.sample_rate,
        )
        self._keep_primer(frames)
        samples = np.asarray(decoded.samples, dtype="<i2")
        return samples[-wanted:].tobytes() if len(samples) > wanted else samples.tobytes()

    def _keep_primer(self, frames: list[bytes]) -> None:
        primer = self._primer + frames
        size, keep = 0, 0
        for frame in reversed(primer):
            if size >= _PRIMER_BYTES and keep >= 3:
                break
            size += len(frame)
            keep += 1
        self._primer = primer[-keep:]


class _Resampler:
    """Streaming resampler from one engine's rate to the reply's rate."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2")
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype="<i2").tobytes()


class ReplyEncoder:
    """Turns a reply's engine segments into one stream in the client's format.

    ``add``/``flush`` return the reply's bytes in order (MP3 frames or raw PCM);
    ``pieces`` cuts such bytes into ``tts_chunk`` payloads.
    """

    def __init__(self, output_format: OutputFormat = "mp3", bitrate_kbps: int = 48) -> None:
        self.format = output_format
        self.bitrate_kbps = bitrate_kbps
        self.sample_rate: int | None = None
        self._passthrough = FrameCutter()  # MP3 segments at the reply rate, for mp3 output
        self._encoder: Mp3Encoder | None = None
        self._encoded_ms = 0.0  # audio of encoders already flushed
        self._pcm_bytes = 0
        self._decoder: Mp3Decoder | None = None
        self._resampler: _Resampler | None = None

    @property
    def duration_ms(self) -> float:
        if self.format != "mp3":
            return self._pcm_bytes / 2 / (self.sample_rate or 1) * 1000
        current = self._encoder.duration_ms if self._encoder else 0.0
        return self._passthrough.duration_ms + self._encoded_ms + current

    def add(self, segment: AudioSegment) -> bytes:
        if self.sample_rate is None:
            self.sample_rate = segment.sample_rate
        if segment.encoding == "mp3":
            if self.format == "mp3" and segment.sample_rate == self.sample_rate:
                return self._end_pcm() + self._passthrough.push(segment.data)
            return self._pcm(self._decode(segment), segment.sample_rate)
        return self._pcm(segment.data, segment.sample_rate)

    def flush(self) -> bytes:
        out = self._end_pcm()
        self._passthrough.flush()  # a cut-off partial frame is not playable: drop it
        return out

    def pieces(self, data: bytes, max_bytes: int) -> list[bytes]:
        if self.format == "mp3":
            return split_frames(data, max_bytes)
        rate = self.sample_rate or 0
        step = max_bytes - (WAV_HEADER_BYTES if self.format == "wav" else 0)
        step -= step % 2
        slices = [data[i : i + step] for i in range(0, len(data), step)]
        if self.format == "wav":
            return [pcm16_to_wav(piece, rate) for piece in slices]
        return slices

    def _decode(self, segment: AudioSegment) -> bytes:
        if self._decoder is None or self._decoder.sample_rate != segment.sample_rate:
            self._decoder = Mp3Decoder(segment.sample_rate)
        return self._decoder.decode(segment.data)

    def _pcm(self, pcm: bytes, rate: int) -> bytes:
        """PCM at ``rate`` into the reply: resampled if needed, encoded for mp3 output."""
        out = b""
        if self._resampler is not None and self._resampler.from_rate != rate:
            out = self._output(self._resampler.process(b"", last=True))
            self._resampler = None
        if rate != self.sample_rate:
            if self._resampler is None:
                self._resampler = _Resampler(rate, self.sample_rate or rate)
            pcm = self._resampler.process(pcm)
        return out + self._output(pcm)

    def _output(self, pcm: bytes) -> bytes:
        if self.format != "mp3":
            self._pcm_bytes += len(pcm)
            return pcm
        if self._encoder is None:
            self._passthrough.flush()  # an engine that failed mid-frame left a partial one
            self._encoder = Mp3Encoder(self.sample_rate or 0, self.bitrate_kbps)
        return self._encoder.encode(pcm)

    def _end_pcm(self) -> bytes:
        """Flush resampler and encoder, so that what follows comes after all of it."""
        out = b""
        if self._resampler is not None:
            out = self._output(self._resampler.process(b"", last=True))
            self._resampler = None
        if self._encoder is not None:
            out += self._encoder.flush()
            self._encoded_ms += self._encoder.duration_ms
            self._encoder = None
        return out
