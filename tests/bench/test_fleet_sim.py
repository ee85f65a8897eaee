"""bench/fleet_sim.py stays runnable: a small fleet (one `dynds worker` of 5 pool children, the real API,
Redis and PostgreSQL, the stand-in for training) runs 30 jobs, and the database shows each succeeded
exactly once with every point stored once."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("fleet_sim", ROOT / "bench" / "fleet_sim.py")
fleet_sim = importlib.util.module_from_spec(spec)
sys.modules["fleet_sim"] = fleet_sim  # its dataclass looks its module up
spec.loader.exec_module(fleet_sim)

PG_ADMIN_URL = os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DYNDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.slow  # 60 s on an idle 2-core machine: the API, a Celery worker and 30 jobs
def test_a_small_fleet_runs_every_job_once_and_stores_every_point_once():
    import psycopg
    import redis

    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (psycopg.Error, redis.RedisError) as exc:
        pytest.fail(f"the fleet test needs PostgreSQL and Redis: {exc}")
    fleet = fleet_sim.Fleet(jobs=30, processes=1, concurrency=5, steps_per_epoch=5, step_ms=10, readers=2, timeout_s=120, redis_url=REDIS_URL)
    f = fleet_sim.run_fleet(PG_ADMIN_URL, fleet, verbose=False)
    assert f["statuses"] == {"succeeded": 30}
    assert f["lost"] == 0 and f["unfinished"] == 0 and f["run_twice"] == 0 and f["claims_not_attempts"] == 0
    assert f["points"] == 30 * fleet.points_per_job and f["duplicate_points"] == 0
    assert f["jobs_with_wrong_point_count"] == 0
    assert f["ok"]
    assert f["messages"] >= 30 and f["waited_past_redispatch"] == 0  # one task message per job at least; none waited 300 s
    assert sum(map(len, f["reads"].values())) > 0 and not any(f["read_errors"].values())


def test_the_stand_in_reports_every_step_and_epoch_and_stops_when_asked():
    from dynds_core.callbacks import Callback
    from dynds_core.spec import JobSpec

    class Seen(Callback):
        def __init__(self, stop_after=None):
            self.steps, self.epochs, self.stop_after = [], [], stop_after

        def on_step(self, m):
            self.steps.append((m.run, m.step))

        def on_epoch(self, m):
            self.epochs.append((m.run, m.epoch))

        def should_stop(self):
            return self.stop_after is not None and len(self.steps) >= self.stop_after

    spec = JobSpec.parse(fleet_sim.Fleet(epochs=2).spec(0))
    seen = Seen()
    result = fleet_sim.stand_in_train(spec, [seen], steps_per_epoch=3, step_s=0.001)
    assert len(seen.steps) + len(seen.epochs) == fleet_sim.Fleet(epochs=2, steps_per_epoch=3).points_per_job
    assert len(set(seen.steps)) == len(seen.steps) and not result.cancelled
    assert result.summary()["time_saving"] > 0
    stopped = Seen(stop_after=4)
    assert fleet_sim.stand_in_train(spec, [stopped], steps_per_epoch=3, step_s=0.0).cancelled
    assert len(stopped.steps) == 4
