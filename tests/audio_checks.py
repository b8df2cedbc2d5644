"""Helpers the tests use to check audio for real: decode MP3, measure speech."""

from __future__ import annotations

import miniaudio

from shared.audio import resample_pcm16, rms_dbfs
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm


def decode_mp3(data: bytes) -> tuple[bytes, float]:
    """Decode MP3 bytes to 16 kHz PCM; returns (pcm, seconds). Raises on invalid MP3."""
    decoded = miniaudio.decode(
        data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=16000
    )
    return decoded.samples.tobytes(), decoded.duration


def speech_16k(text: str, lead_silence_ms: int = 300, tail_silence_ms: int = 400) -> bytes:
    """``text`` spoken by the offline TTS, as 16 kHz PCM with silence around it."""
    pcm = resample_pcm16(synthesize_pcm(text), espeak_sample_rate(), 16000)
    silence = b"\x00\x00" * 16
    return silence * lead_silence_ms + pcm + silence * tail_silence_ms


def voiced_fraction(pcm: bytes, frame_ms: int = 30, threshold_dbfs: float = -45.0) -> float:
    """Share of frames loud enough to be speech: real speech has many, noise or silence few."""
    step = 16 * 2 * frame_ms
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    if not frames:
        return 0.0
    return sum(rms_dbfs(f) > threshold_dbfs for f in frames) / len(frames)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length (case-insensitive)."""
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1] / max(1, len(ref))
