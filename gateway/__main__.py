"""``python -m gateway``: the WebSocket gateway alone (workers run elsewhere).

Settings are checked before the server's modules load, so a bad value ends the process
at once with one line. With ``GATEWAY_PROCESSES=N`` (N > 1) this process supervises N
gateway processes that share ``PORT`` (``gateway.supervisor``: why and how).
"""

from __future__ import annotations

import logging
import os

from gateway.supervisor import CHILD_ENV, die_with_supervisor, supervise
from shared.settings import port_free_or_exit, settings_or_exit

PROGRAM = "python -m gateway"


def main() -> None:
    settings = settings_or_exit(PROGRAM)
    child = os.environ.get(CHILD_ENV)
    if child is None:
        port_free_or_exit(PROGRAM, settings.host, settings.port)
    else:
        die_with_supervisor()
    from gateway.server import gateway_server, page_url, reuse_port_socket
    from shared.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("gateway")
    if child is None and settings.gateway_processes > 1:
        log.info(
            "gateway on %s (WebSocket /ws/voice), %d processes",
            page_url(settings.host, settings.port),
            settings.gateway_processes,
        )
        raise SystemExit(supervise(settings, PROGRAM))
    server = gateway_server(settings)
    if child is None:
        log.info("gateway on %s (WebSocket /ws/voice)", page_url(settings.host, settings.port))
        server.run()
    else:
        server.run(sockets=[reuse_port_socket(settings.host, settings.port)])


if __name__ == "__main__":
    main()
