"""``python -m asr_worker``: one ASR worker process (scale by running more of them)."""

from shared.settings import settings_or_exit

if __name__ == "__main__":
    settings = settings_or_exit("python -m asr_worker")  # before the engines load
    from asr_worker.providers import build
    from shared.service import worker_main

    worker_main(build, "python -m asr_worker", settings)
