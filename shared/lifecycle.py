"""Whether this process is shutting down on purpose (a signal or the end of ``up``).

Once it is, losing Redis is expected (``compose down`` stops Redis at the same moment,
and the embedded server goes last), so the reconnect loops stay quiet instead of
warning about a connection nobody needs any more.
"""

from __future__ import annotations

_shutting_down = False


def begin_shutdown() -> None:
    global _shutting_down
    _shutting_down = True


def shutting_down() -> bool:
    return _shutting_down
