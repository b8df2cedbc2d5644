from tests.audio_checks import decode_mp3
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
from tts_worker.mp3 import Mp3Encoder, frame_length, split_frames


def _encode(text: str) -> tuple[list[bytes], Mp3Encoder]:
    pcm = synthesize_pcm(text)
    encoder = Mp3Encoder(espeak_sample_rate(), 48)
    step = 2205 * 2
    outputs = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    return [*outputs, encoder.flush()], encoder


def test_encoder_output_always_starts_on_a_frame_header() -> None:
    outputs, _ = _encode("Markets rise after the rate decision. Coffee prices fall again.")
    assert all(frame_length(out[:4]) > 0 for out in outputs if out)


def test_encoded_duration_matches_the_pcm() -> None:
    pcm = synthesize_pcm("Local team wins the championship.")
    outputs, encoder = _encode("Local team wins the championship.")
    _, seconds = decode_mp3(b"".join(outputs))
    expected = len(pcm) / 2 / espeak_sample_rate()
    assert abs(seconds - expected) < 0.2
    assert abs(encoder.duration_ms / 1000 - seconds) < 0.1


def test_split_frames_respects_the_size_limit_and_loses_nothing() -> None:
    outputs, _ = _encode("Robots help sort recycling in the city.")
    stream = b"".join(outputs)
    pieces = split_frames(stream, 1024)
    assert b"".join(pieces) == stream
    assert all(len(p) <= 1024 for p in pieces) and len(pieces) > 1
    assert all(whole_frames(p) for p in pieces)


def whole_frames(data: bytes) -> bool:
    """True when ``data`` is a sequence of complete MP3 frames, nothing cut."""
    pos = 0
    while pos < len(data):
        length = frame_length(data[pos : pos + 4])
        if length == 0:
            return False
        pos += length
    return pos == len(data)


def test_frame_length_rejects_non_headers() -> None:
    assert frame_length(b"ID3\x04") == 0
    assert frame_length(b"\xff\xfb") == 0
