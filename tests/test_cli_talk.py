"""``voice-agent talk`` against the running system: typed and spoken, reply saved, in the
language asked for (``--lang``, and the Python client's ``lang``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.audio import pcm16_to_wav
from tests.audio_checks import decode_mp3, speech_16k
from voice_agent.client import VoiceClient
from voice_agent.talk import EXIT_TURN_FAILED

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


def test_talk_with_lang_is_answered_in_that_language(system, tmp_path: Path) -> None:
    out = tmp_path / "reply.mp3"
    # "news" alone would be answered in English: the language comes from --lang
    result = _talk(system, "--lang", "de", "--text", "news", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "agent: Hier sind die wichtigsten Schlagzeilen. Erstens:" in result.stdout
    assert decode_mp3(out.read_bytes())[1] > 1.0


def test_talk_with_an_unknown_lang_names_the_choices(system, tmp_path: Path) -> None:
    result = _talk(system, "--lang", "tlh", "--text", "news", "--out", str(tmp_path / "r.mp3"))
    assert result.returncode == EXIT_TURN_FAILED
    assert "supported language" in result.stderr and "zh-cn" in result.stderr.lower()


async def test_python_client_sets_the_session_language(system) -> None:
    async with VoiceClient.connect(f"{system.ws_url}?user_id=py", lang="fr") as client:
        assert client.connected["lang"] == "fr" and client.connected["lang_auto"] is False
        turn = await client.ask("news")
    assert turn.reply_text.startswith("Voici les principaux titres.")
