"""``python -m gateway``: the WebSocket gateway alone (workers run elsewhere).

Settings are checked before the server's modules load, so a bad value ends the process
at once with one line.
"""

from __future__ import annotations

import logging

from shared.settings import port_free_or_exit, settings_or_exit


def main() -> None:
    settings = settings_or_exit("python -m gateway")
    port_free_or_exit("python -m gateway", settings.host, settings.port)
    from gateway.server import gateway_server, page_url
    from shared.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    logging.getLogger("gateway").info(
        "gateway on %s (WebSocket /ws/voice)", page_url(settings.host, settings.port)
    )
    gateway_server(settings).run()


def __getattr__(name: str) -> object:
    """``gateway_server`` and ``page_url`` moved to ``gateway.server``; older imports of them
    from here keep working (without loading the server just to run ``main``)."""
    if name in ("gateway_server", "page_url"):
        from gateway import server

        return getattr(server, name)
    raise AttributeError(name)


if __name__ == "__main__":
    main()
