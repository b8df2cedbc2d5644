from gateway.endpointing import Endpointer
from tests.audio_checks import speech_16k

CHUNK = 3200  # 100 ms


def _chunks(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]


def test_speech_then_silence_ends_the_utterance_after_the_pause() -> None:
    endpointer = Endpointer(silence_ms=600)
    speech = speech_16k("read me the sports headlines", tail_silence_ms=0)
    assert not any(endpointer.push(chunk) for chunk in _chunks(speech))
    silence = [b"\x00\x00" * 1600] * 10
    ended_at = next(n for n, chunk in enumerate(silence) if endpointer.push(chunk))
    assert 5 <= ended_at <= 7  # 600 ms of silence, in 100 ms chunks


def test_silence_alone_never_ends_an_utterance() -> None:
    endpointer = Endpointer(silence_ms=300)
    assert not any(endpointer.push(b"\x00\x00" * 1600) for _ in range(50))


def test_a_short_pause_inside_speech_does_not_end_it() -> None:
    endpointer = Endpointer(silence_ms=600)
    first = speech_16k("technology", tail_silence_ms=300)
    second = speech_16k("news", lead_silence_ms=0, tail_silence_ms=0)
    assert not any(endpointer.push(chunk) for chunk in _chunks(first + second))


def test_speech_onset_needs_continuous_speech_not_a_click() -> None:
    from gateway.endpointing import SpeechOnset

    onset = SpeechOnset(240)
    assert not onset.push(b"\x00\x00" * 16000)  # a second of silence
    click = (b"\xff\x7f\x01\x80" * 80) + b"\x00\x00" * 1440  # 10 ms of full scale, then quiet
    assert not onset.push(click) and not onset.push(b"\x00\x00" * 16000)
    speech = speech_16k("stop, tell me the sports news instead", lead_silence_ms=0)
    pieces = [speech[i : i + 3200] for i in range(0, len(speech), 3200)]
    heard_at = next(n for n, piece in enumerate(pieces) if onset.push(piece))
    assert 1 <= heard_at <= 5  # after about a quarter of a second of voice
