"""/healthz and /readyz: the database, and the broker when there is one."""

import os

import pytest
from fastapi.testclient import TestClient

from app.dispatch import CeleryDispatcher
from app.main import create_app

REDIS_URL = os.environ.get("DYNDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_health_and_ready_embedded(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/v1/healthz").status_code == 200
    assert client.get("/readyz").json() == {"database": "ok", "broker": "embedded"}


def test_ready_is_503_naming_a_broker_that_is_down(settings, dispatcher):
    app = create_app(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}), dispatcher=dispatcher)
    with TestClient(app) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["database"] == "ok" and r.json()["broker"].startswith("down")


def test_ready_with_a_real_redis(settings):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    s = settings.model_copy(update={"broker_url": REDIS_URL})
    app = create_app(s)  # no dispatcher given: a Celery one is made from the broker URL
    assert isinstance(app.state.dispatcher, CeleryDispatcher)
    with TestClient(app) as c:
        assert c.get("/readyz").json() == {"database": "ok", "broker": "ok"}


def test_ready_is_503_when_the_database_is_down(tmp_path, dispatcher):
    from app.core.config import Settings

    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/none", home=tmp_path)
    app = create_app(settings, dispatcher=dispatcher)
    c = TestClient(app)  # not entered: start-up would try to migrate the unreachable database
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["database"].startswith("down") and r.json()["broker"] == "embedded"
    assert c.get("/healthz").status_code == 200
