"""``python -m llm_worker``: one LLM worker process (scale by running more of them)."""

from shared.settings import settings_or_exit

if __name__ == "__main__":
    settings = settings_or_exit("python -m llm_worker")  # before the engines load
    from llm_worker.feed_report import start_feed_report
    from llm_worker.providers import build
    from shared.service import worker_main

    async def build_and_report(redis, settings):  # type: ignore[no-untyped-def]
        start_feed_report(settings)
        return await build(redis, settings)

    worker_main(build_and_report, "python -m llm_worker", settings)
