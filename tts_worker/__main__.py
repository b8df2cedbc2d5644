"""``python -m tts_worker``: one TTS worker process (scale by running more of them)."""

from shared.service import worker_main
from tts_worker.providers import build

if __name__ == "__main__":
    worker_main(build, "python -m tts_worker")
