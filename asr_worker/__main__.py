"""``python -m asr_worker``: one ASR worker process (scale by running more of them)."""

from asr_worker.providers import build
from shared.service import worker_main

if __name__ == "__main__":
    worker_main(build, "python -m asr_worker")
