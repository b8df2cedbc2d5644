"""MP3 output: incremental encoding with lameenc and cutting at frame boundaries.

LAME hands back bytes that do not end on frame boundaries. A ``tts_chunk`` must hold
whole frames so that a client can decode or play each chunk as it arrives (the iOS
seed plays chunks one by one), so every MP3 byte stream passes through ``FrameCutter``.
"""

from __future__ import annotations

import lameenc

_BITRATES_V1_L3 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2_L3 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_HEADER_BYTES = 4


def frame_length(header: bytes) -> int:
    """Length in bytes of the Layer III frame starting with ``header``, or 0 if invalid."""
    if len(header) < _HEADER_BYTES or header[0] != 0xFF or (header[1] & 0xE0) != 0xE0:
        return 0
    version = (header[1] >> 3) & 0x3
    layer = (header[1] >> 1) & 0x3
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 0x3
    padding = (header[2] >> 1) & 0x1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return 0
    sample_rate = _SAMPLE_RATES[version][rate_index]
    if version == 3:
        return 144 * _BITRATES_V1_L3[bitrate_index] * 1000 // sample_rate + padding
    return 72 * _BITRATES_V2_L3[bitrate_index] * 1000 // sample_rate + padding


def frame_duration_ms(header: bytes) -> float:
    version = (header[1] >> 3) & 0x3
    sample_rate = _SAMPLE_RATES[version][(header[2] >> 2) & 0x3]
    samples = 1152 if version == 3 else 576
    return samples * 1000.0 / sample_rate


class FrameCutter:
    """Buffers an MP3 byte stream and releases only complete frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.duration_ms = 0.0

    def push(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        pos = 0
        buffer = self._buffer
        while pos + _HEADER_BYTES <= len(buffer):
            length = frame_length(bytes(buffer[pos : pos + _HEADER_BYTES]))
            if length == 0:  # not a header: resynchronise on the next byte
                pos += 1
                continue
            if pos + length > len(buffer):
                break
            out += buffer[pos : pos + length]
            self.duration_ms += frame_duration_ms(bytes(buffer[pos : pos + _HEADER_BYTES]))
            pos += length
        del buffer[:pos]
        return bytes(out)

    def flush(self) -> bytes:
        """Whatever is left (a final frame the encoder padded short is still playable)."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest


class Mp3Encoder:
    """PCM in, whole MP3 frames out, for one continuous reply."""

    def __init__(self, sample_rate: int, bitrate_kbps: int = 48) -> None:
        self.sample_rate = sample_rate
        self._lame = lameenc.Encoder()
        self._lame.set_bit_rate(bitrate_kbps)
        self._lame.set_in_sample_rate(sample_rate)
        self._lame.set_channels(1)
        self._lame.set_quality(7)  # fast; speech at 48 kbit/s gains nothing from slower modes
        self._cutter = FrameCutter()

    @property
    def duration_ms(self) -> float:
        return self._cutter.duration_ms

    def encode(self, pcm: bytes) -> bytes:
        return self._cutter.push(bytes(self._lame.encode(pcm)))

    def flush(self) -> bytes:
        return self._cutter.push(bytes(self._lame.flush())) + self._cutter.flush()


def split_frames(frames: bytes, max_bytes: int) -> list[bytes]:
    """Group whole frames into pieces of at most ``max_bytes`` (one frame may exceed it)."""
    pieces: list[bytes] = []
    current = bytearray()
    pos = 0
    while pos < len(frames):
        length = frame_length(frames[pos : pos + _HEADER_BYTES]) or len(frames) - pos
        frame = frames[pos : pos + length]
        if current and len(current) + len(frame) > max_bytes:
            pieces.append(bytes(current))
            current = bytearray()
        current += frame
        pos += length
    if current:
        pieces.append(bytes(current))
    return pieces
