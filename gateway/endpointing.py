"""Server-side end-of-speech detection, so hands-free clients need not send ``is_final``.

WebRTC's voice activity detector (``webrtcvad-wheels``) classifies 30 ms frames; once an
utterance has contained speech, a run of continuous non-speech ends it. How long a run
depends on what was said (``gateway.utterance.EndOfSpeechPolicy``): ``silent_for`` answers
for any length.
Costs a few microseconds per frame on the gateway, nothing on the workers.
"""

from __future__ import annotations

import webrtcvad

SAMPLE_RATE = 16000
FRAME_MS = 30
FRAME_BYTES = SAMPLE_RATE * 2 * FRAME_MS // 1000
MIN_SPEECH_FRAMES = 3  # 90 ms of speech before an utterance counts as spoken


class _VadFrames:
    """Splits a stream of 16 kHz PCM pieces into whole 30 ms frames and classifies them."""

    def __init__(self, aggressiveness: int) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._pending = b""

    def classify(self, pcm: bytes) -> list[bool]:
        """Speech or not, for each whole frame completed by ``pcm`` (the rest waits).
        A list, not a generator: asked of every frame of every utterance."""
        data = self._pending + pcm if self._pending else pcm
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        is_speech = self._vad.is_speech
        return [
            is_speech(data[offset : offset + FRAME_BYTES], SAMPLE_RATE)
            for offset in range(0, whole, FRAME_BYTES)
        ]

    def contains_speech(self, pcm: bytes) -> bool:
        """Whether any whole frame of ``pcm`` alone is speech (no state involved)."""
        usable = len(pcm) - len(pcm) % FRAME_BYTES
        frames = range(0, usable, FRAME_BYTES)
        return any(self._vad.is_speech(pcm[i : i + FRAME_BYTES], SAMPLE_RATE) for i in frames)

    def reset(self) -> None:
        self._pending = b""


class Endpointer(_VadFrames):
    def __init__(self, silence_ms: int, aggressiveness: int = 2) -> None:
        super().__init__(aggressiveness)
        self._silence_frames_to_end = max(1, silence_ms // FRAME_MS)
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        super().reset()
        self._speech_frames = 0
        self._trailing_silence = 0

    def push(self, pcm: bytes) -> bool:
        """Add 16 kHz s16le audio; True when the utterance has just ended."""
        for speech in self.classify(pcm):
            if speech:
                self._speech_frames += 1
                self._trailing_silence = 0
            else:
                self._trailing_silence += 1
        return self._ended(self._silence_frames_to_end)

    def silent_for(self, silence_ms: int) -> bool:
        """Whether the utterance has held speech and then ``silence_ms`` of non-speech."""
        return self._ended(max(1, silence_ms // FRAME_MS))

    def _ended(self, frames: int) -> bool:
        spoken = self._speech_frames >= MIN_SPEECH_FRAMES
        return spoken and self._trailing_silence >= frames


class SpeechOnset(_VadFrames):
    """Detects speech starting over a reply: ``min_speech_ms`` of continuous speech.

    Voice activity alone cannot tell a person from a cough or from the reply's own echo
    (both pass 240 ms easily): ``gateway.barge_in`` pauses on it and lets words and the
    echo check decide; only ``BARGE_IN_MODE=immediate`` cuts on it directly.
    """

    def __init__(self, min_speech_ms: int, aggressiveness: int = 3) -> None:
        super().__init__(aggressiveness)
        self._frames_needed = max(1, min_speech_ms // FRAME_MS)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._run = 0

    def push(self, pcm: bytes) -> bool:
        """Add audio; True once enough continuous speech has been heard."""
        for speech in self.classify(pcm):
            self._run = self._run + 1 if speech else 0
            if self._run >= self._frames_needed:
                return True
        return False
