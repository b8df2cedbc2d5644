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
    lines = result.stdout.splitlines()
    table = lines[next(i for i, ln in enumerate(lines) if ln.startswith("timing ")) : -1]
    print("\n".join(table))  # the last line of the output is the run time, (N s)
    rows = {line[:30].strip(): line for line in table[2:]}
    assert {"first partial transcript", "final transcript", "first tts_chunk"} <= set(rows)
    assert len({len(line) for line in table}) == 1  # aligned
    for line in table[2:]:
        start, after = line[-27:-15].strip(), line[-15:].strip()
        assert start not in ("0", "-0") and after not in ("0", "-0"), line


def test_talk_names_the_file_it_replaces(system, tmp_path: Path) -> None:
    out = tmp_path / "reply.mp3"
    first = _talk(system, "--text", "sports news", "--out", str(out))
    assert first.returncode == 0 and "replacing" not in first.stdout
    second = _talk(system, "--text", "business news", "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert f"to {out}, replacing the {out} that was there" in second.stdout


def test_talk_takes_the_servers_web_address_as_a_base(system, tmp_path: Path) -> None:
    out = str(tmp_path / "r.mp3")
    result = _talk(system, "--text", "technology news", "--url", system.http_url, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "agent: " in result.stdout
