"""What tests and benchmarks share: free ports, waiting for HTTP, the whole system as a
subprocess (``running_system``), the fixture feeds. Benchmarks import it as
``tests.support`` (run them from the repository root: ``python -m bench.NAME``)."""

from tests.support.fixture_http import fixture_server, serve_fixtures
from tests.support.processes import (
    E2E_FEEDS,
    FIXTURES,
    ROOT,
    ServiceProcesses,
    System,
    free_port,
    running_system,
    wait_for_http,
)

__all__ = [
    "E2E_FEEDS",
    "FIXTURES",
    "ROOT",
    "ServiceProcesses",
    "System",
    "fixture_server",
    "free_port",
    "running_system",
    "serve_fixtures",
    "wait_for_http",
]
