"""uvicorn's WebSocket protocol, without a pause of the socket after every message.

uvicorn's ``websockets-sansio`` protocol stops reading a connection after each message
it queues for the app and starts again when the app takes it: two changes of the event
loop's interest in the socket (``epoll_ctl``) for every audio frame, ten a second per
session. Here reading stops only once ``PAUSE_AT`` messages wait for the app: a client
that keeps pace (one frame handled before the next arrives) is never paused, and one
that sends faster than the gateway handles its frames makes it hold one message more
than before, no more (frames are up to ``4 * MAX_FRAME_BYTES``).
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

PAUSE_AT = 2  # messages waiting for the app


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        """Queue the message for the app; pause reading only at ``PAUSE_AT``. (The parent
        pauses unless it believes it has already: it is told so, then set right.)"""
        paused = self.read_paused
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not paused and self.queue.qsize() >= PAUSE_AT and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()
