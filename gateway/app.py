"""The FastAPI application: ``/ws/voice`` for clients, ``/health`` for load balancers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.auth import Authenticator, AuthError, bearer_token
from gateway.early_reply import finish_closed_copies
from gateway.relay import ReplyRelay
from gateway.session import VoiceSession
from gateway.session_store import SessionStore
from gateway.web import add_voice_page
from shared import metrics, protocol
from shared.checkpoint import preload_scripts
from shared.control import ControlChannel
from shared.resp import send_through_redis_py
from shared.settings import Settings
from shared.streams import connect

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY_VIOLATION = 1008
CLOSE_SERVICE_RESTART = 1012
READY_WINDOW_MS = 10_000  # a heartbeat younger than this counts as a live worker
CLOSED_COPY_WAIT_S = 10.0  # at shutdown: for used early replies of closed connections


def _served_by(app: FastAPI) -> dict[str, str]:
    """Which process answered (``GATEWAY_PROCESSES``), as the WebSocket handshake says."""
    return {"x-gateway-id": app.state.relay.gateway_id}


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway for ``settings``; Redis and the relay live as long as the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings.redis_url, settings.redis_max_connections, settings.cluster)
        send_through_redis_py(settings.redis_plain_uses)
        relay = ReplyRelay(redis, settings.keys, push=settings.stream_push)
        relay.start()
        await preload_scripts(redis)
        control = ControlChannel(redis, settings.keys, settings.session_ttl_seconds)
        await control.start()
        app.state.redis, app.state.relay, app.state.sessions = redis, relay, set()
        app.state.control = control
        app.state.store = SessionStore(
            redis,
            settings.keys,
            settings.session_ttl_seconds,
            settings.resume_window_seconds,
            settings.resumes_per_minute,
        )
        app.state.draining = False
        app.state.all_closed = asyncio.Event()
        app.state.all_closed.set()
        log.info("gateway %s ready", relay.gateway_id)
        metrics.GATEWAY_PROCESSES.set(1)
        try:
            yield
        finally:
            await finish_closed_copies(CLOSED_COPY_WAIT_S)  # replies started early
            metrics.flush_event_counts()
            metrics.GATEWAY_PROCESSES.set(0)
            await control.stop()
            await relay.stop()
            await redis.aclose()

    app = FastAPI(title="Voice News Agent gateway", lifespan=lifespan)

    @app.get("/health")
    async def health() -> JSONResponse:
        redis_ok = True
        try:
            async with asyncio.timeout(1.0):
                await app.state.redis.ping()
        except Exception:
            redis_ok = False
        here = len(app.state.sessions)
        processes, sessions = metrics.gateway_totals() or (1, here)
        body = {
            "status": "ok" if redis_ok else "degraded",
            "redis": "ok" if redis_ok else "unreachable",
            "sessions": sessions,  # on every process of GATEWAY_PROCESSES
            "processes": processes,
            "gateway": app.state.relay.gateway_id,  # the process that answered
            "gateway_sessions": here,
        }
        return JSONResponse(body, headers=_served_by(app))

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Ready = Redis answers and every worker kind has a live consumer (heartbeat)."""
        workers: dict[str, int] = {}
        try:
            async with asyncio.timeout(1.0):
                now = int(time.time() * 1000)
                for kind in settings.worker_kinds:
                    key = settings.keys.heartbeats(kind)
                    workers[kind] = await app.state.redis.zcount(key, now - READY_WINDOW_MS, "+inf")
            redis_ok = True
        except Exception:
            redis_ok = False
        ok = redis_ok and all(workers.get(kind) for kind in settings.worker_kinds)
        body = {"ready": ok, "redis": "ok" if redis_ok else "unreachable", "workers": workers}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        """Every gateway process's metrics, whichever answers (``shared.metrics``)."""
        metrics.flush_event_counts()  # this process's page is exact
        body = await asyncio.to_thread(metrics.exposition)  # reads files: off the loop
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=_served_by(app))

    authenticator = Authenticator(settings)

    @app.websocket("/ws/voice")
    async def voice(websocket: WebSocket) -> None:
        sessions: set[VoiceSession] = app.state.sessions
        headers = websocket.headers
        if not authenticator.origin_allowed(headers.get("origin"), headers.get("host")):
            await websocket.close(code=CLOSE_POLICY_VIOLATION)  # before accept: HTTP 403
            return
        await websocket.accept(headers=[(b"x-gateway-id", app.state.relay.gateway_id.encode())])
        if app.state.draining:
            await websocket.close(code=CLOSE_SERVICE_RESTART, reason="server restarting")
            return
        if len(sessions) >= settings.max_websocket_connections:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="server full, retry later")
            return
        query = dict(websocket.query_params)
        try:
            options = protocol.parse_session_options(query)
            params = protocol.parse_connect_params(query)
        except protocol.ProtocolError as exc:
            await websocket.send_text(protocol.error_frame(exc.code, exc.message, ""))
            await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="invalid query parameters")
            return
        token = params.token or bearer_token(websocket.headers.get("authorization"))
        try:
            user_id = authenticator.user_for(token, params.user_id)
        except AuthError as exc:
            metrics.ERRORS.labels(protocol.UNAUTHORIZED).inc()
            await websocket.send_text(protocol.error_frame(protocol.UNAUTHORIZED, str(exc), ""))
            await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="unauthorized")
            return
        session = VoiceSession(
            websocket,
            settings,
            app.state.redis,
            app.state.relay,
            app.state.control,
            app.state.store,
            params.model_copy(update={"user_id": user_id}),
            options,
        )
        sessions.add(session)
        app.state.all_closed.clear()
        metrics.SESSIONS_OPEN.inc()
        try:
            await session.run()
        finally:
            sessions.discard(session)
            if not sessions:
                app.state.all_closed.set()
            metrics.SESSIONS_OPEN.dec()

    @app.websocket("/{path:path}")
    async def no_voice_endpoint(websocket: WebSocket, path: str) -> None:
        """Any other WebSocket path: HTTP 404 naming the right one (Starlette's 403 for an
        unmatched path reads as "access refused" to a client that has no token to fix)."""
        body = f"no voice endpoint at /{path}; the path is /ws/voice\n"
        await websocket.send_denial_response(PlainTextResponse(body, status_code=404))

    async def drain(deadline_seconds: float) -> None:
        """SIGTERM: refuse new sockets, let replies in progress finish (up to the deadline),
        then close every socket with 1012 so clients reconnect elsewhere and resume."""
        app.state.draining = True
        sessions: set[VoiceSession] = app.state.sessions
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline_seconds):
                await asyncio.gather(*(s.delivery.idle.wait() for s in list(sessions)))
        for session in list(sessions):
            session.close_for_restart()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await app.state.all_closed.wait()

    app.state.drain = drain
    add_voice_page(app)  # the browser page at / (gateway/web.py)
    return app
