"""Engines: PostgreSQL's pooled connections are pinged only after sitting idle, and a dead one is replaced."""

import time

import psycopg
import pytest

from app.core import db
from app.core.db import make_engine


@pytest.fixture
def pg_engine(pg_url, monkeypatch):
    pings = []
    engine = make_engine(pg_url)
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    engine.pings = pings
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("select pg_backend_pid()").scalar_one()


def test_a_connection_in_steady_use_is_not_pinged(pg_engine):
    first = backend_pid(pg_engine)
    assert [backend_pid(pg_engine) for _ in range(5)] == [first] * 5  # the same pooled connection
    assert pg_engine.pings == []  # no round trip before each use


def test_an_idle_connection_the_server_ended_is_replaced_at_checkout(pg_engine, pg_url, monkeypatch):
    first = backend_pid(pg_engine)
    # The server ends the pooled connection while it sits idle (a restart, an idle-session timeout).
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (first,))
    time.sleep(0.2)
    monkeypatch.setattr(db, "IDLE_PING_S", 0.1)  # read at checkout: the connection now counts as idle
    second = backend_pid(pg_engine)  # no error: pinged, found dead, replaced
    assert second != first and pg_engine.pings
