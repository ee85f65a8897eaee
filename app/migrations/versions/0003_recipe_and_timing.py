"""job.recipe_hash and job.frontier_key (leaderboard tracks are recipes), and the new summary columns
time_saving_interleaved, timing_noisy, verdict

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 19:40:00.000000

Existing rows get their recipe_hash and frontier_key from their stored spec, computed here by a frozen
copy of app.leaderboard.recipe_of (a migration must not change when that module does). Specs stored
before train.pairing existed keep their spec as stored, so their recipe differs from a new job's: they
were timed differently. Succeeded adaptive jobs give up their dedup hold (active_hash): an adaptive
schedule decides from measured step times, so a re-run is not the same experiment.
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NOT_RECIPE = ("name", "dynds", "baseline", "equal_time_baseline")


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _recipe(spec: dict) -> dict:
    recipe = {k: json.loads(json.dumps(v)) for k, v in spec.items() if k not in _NOT_RECIPE}
    if isinstance(recipe.get("train"), dict):
        recipe["train"].pop("seed", None)
    return recipe


def _keys(spec) -> tuple[str | None, str | None]:
    if isinstance(spec, str):
        spec = json.loads(spec)
    if not isinstance(spec, dict):
        return None, None
    recipe = _recipe(spec)
    front = json.loads(json.dumps(recipe))
    if isinstance(front.get("train"), dict):
        front["train"].pop("epochs", None)
    return _hash(recipe), _hash(front)


def upgrade() -> None:
    op.add_column("job", sa.Column("recipe_hash", sa.String(length=16), nullable=True))
    op.add_column("job", sa.Column("frontier_key", sa.String(length=16), nullable=True))
    op.add_column("job", sa.Column("time_saving_interleaved", sa.Float(), nullable=True))
    op.add_column("job", sa.Column("timing_noisy", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("job", sa.Column("verdict", sa.String(length=32), nullable=True))
    job = sa.table(
        "job",
        sa.column("id", sa.Integer),
        sa.column("spec", sa.JSON),
        sa.column("recipe_hash", sa.String),
        sa.column("frontier_key", sa.String),
        sa.column("status", sa.String),
        sa.column("schedule_kind", sa.String),
        sa.column("active_hash", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(job.c.id, job.c.spec)).all()
    updates = []
    for job_id, spec in rows:
        try:
            rh, fk = _keys(spec)
        except (ValueError, TypeError):
            rh, fk = None, None
        if rh is not None:
            updates.append({"job_id": job_id, "rh": rh, "fk": fk})
    if updates:
        conn.execute(
            job.update().where(job.c.id == sa.bindparam("job_id")).values(recipe_hash=sa.bindparam("rh"), frontier_key=sa.bindparam("fk")),
            updates,
        )
    conn.execute(job.update().where(job.c.status == "succeeded", job.c.schedule_kind == "adaptive").values(active_hash=None))
    op.create_index("ix_job_recipe_status", "job", ["recipe_hash", "status"])
    op.create_index("ix_job_frontier_status", "job", ["frontier_key", "status"])


def downgrade() -> None:
    op.drop_index("ix_job_frontier_status", table_name="job")
    op.drop_index("ix_job_recipe_status", table_name="job")
    for name in ("verdict", "timing_noisy", "time_saving_interleaved", "frontier_key", "recipe_hash"):
        op.drop_column("job", name)
