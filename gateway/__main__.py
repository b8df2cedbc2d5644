"""``python -m gateway``: the WebSocket gateway alone (workers run elsewhere)."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from shared.logs import setup_logging
from shared.settings import load_settings


def uvicorn_config(
    app: object, host: str, port: int, log_level: str, max_frame: int
) -> uvicorn.Config:
    """Frames up to 4x the protocol limit reach the app, which answers with an error event."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level.lower(),
        ws_max_size=max(4 * max_frame, 1 << 20),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        proxy_headers=True,
    )


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    config = uvicorn_config(
        create_app(settings),
        settings.host,
        settings.port,
        settings.log_level,
        settings.max_frame_bytes,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
