import httpx


def test_health_reports_redis_and_sessions(system) -> None:
    body = httpx.get(f"{system.http_url}/health", timeout=5).json()
    assert body["status"] == "ok"
    assert body["redis"] == "ok"
    assert isinstance(body["sessions"], int)
