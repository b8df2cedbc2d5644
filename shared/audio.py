"""PCM helpers shared by the engines, the tests and the clients.

All PCM in this project is signed 16-bit little-endian mono. Resampling uses soxr
(high quality, streaming-capable) rather than a hand-written filter.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr

PCM_SAMPLE_WIDTH = 2


def resample_pcm16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample a whole 16-bit mono buffer."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


def pcm16_duration_ms(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / PCM_SAMPLE_WIDTH / sample_rate * 1000.0


def pcm16_to_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Wrap PCM in a WAV container (for clients asking for ``wav`` and for upload APIs)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(PCM_SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def wav_to_pcm16(data: bytes) -> tuple[bytes, int]:
    """Read a 16-bit WAV (mono or stereo, downmixed); returns (pcm, sample_rate)."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != PCM_SAMPLE_WIDTH:
            raise ValueError("only 16-bit WAV is supported")
        frames = wav.readframes(wav.getnframes())
        rate, channels = wav.getframerate(), wav.getnchannels()
    if channels > 1:
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).mean(axis=1)
        frames = samples.astype("<i2").tobytes()
    return frames, rate


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of a PCM buffer in dBFS (-inf for silence); used to tell speech from silence."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples**2)))
    return 20 * np.log10(rms / 32768.0) if rms > 0 else float("-inf")
