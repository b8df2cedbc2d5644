"""``python -m llm_worker``: one LLM worker process (scale by running more of them)."""

from llm_worker.providers import build
from shared.service import worker_main

if __name__ == "__main__":
    worker_main(build, "python -m llm_worker")
