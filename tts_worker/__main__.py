"""``python -m tts_worker``: one TTS worker process (scale by running more of them)."""

from shared.settings import settings_or_exit

if __name__ == "__main__":
    settings = settings_or_exit("python -m tts_worker")  # before the engines load
    from shared.service import worker_main
    from tts_worker.providers import build

    worker_main(build, "python -m tts_worker", settings)
