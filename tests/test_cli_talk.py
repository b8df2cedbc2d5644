"""``voice-agent talk`` against the running system: typed and spoken, reply saved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.audio import pcm16_to_wav
from tests.audio_checks import decode_mp3, speech_16k

ROOT = Path(__file__).parent.parent


def _talk(system, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "voice_agent.cli", "talk", "--url", system.ws_url, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_talk_with_text_prints_reply_and_saves_audio(system, tmp_path: Path) -> None:
    out = tmp_path / "reply.mp3"
    result = _talk(system, "--text", "technology news", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "agent: " in result.stdout and "battery" in result.stdout.lower()
    assert "first tts_chunk" in result.stdout
    assert decode_mp3(out.read_bytes())[1] > 2.0


def test_talk_with_a_wav_file_prints_the_transcript(system, tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    wav.write_bytes(pcm16_to_wav(speech_16k("read me the sports headlines"), 16000))
    result = _talk(system, str(wav), "--fast", "--out", str(tmp_path / "r.mp3"))
    assert result.returncode == 0, result.stderr
    assert "you: " in result.stdout and "sports" in result.stdout
    # piped: partials are plain lines, no carriage returns and no padding
    assert "\r" not in result.stdout and "    " not in result.stdout.split("timing")[0]
    assert "striker" in result.stdout.lower()
