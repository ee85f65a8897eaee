"""job.attempts: how many times the job has been started (claimed by a worker), in its own column

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:55:00.000000

Recovery with DYNDS_RECOVER_POLICY=requeue puts a job whose process died back in the queue only while
attempts < DYNDS_MAX_ATTEMPTS, then fails it with the reason. Before this column the requeue marker lived
in job.progress, which the first metrics flush overwrote, so a job that killed its process was requeued
forever. Existing rows: a job that has been started (started_at set) counts one attempt; a queued job carrying the old
marker ({"requeued": true}) was started once already.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    job = sa.table(
        "job",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("started_at", sa.DateTime),
        sa.column("progress", sa.JSON),
        sa.column("attempts", sa.Integer),
    )
    conn = op.get_bind()
    # started_at is set by the claim: a job cancelled or failed while still queued was never started
    conn.execute(job.update().where(job.c.started_at.is_not(None)).values(attempts=1))
    marked = []
    for job_id, progress in conn.execute(sa.select(job.c.id, job.c.progress).where(job.c.status == "queued", job.c.progress.is_not(None))).all():
        if isinstance(progress, str):
            try:
                progress = json.loads(progress)
            except ValueError:
                continue
        if isinstance(progress, dict) and progress.get("requeued"):
            marked.append(job_id)
    if marked:
        conn.execute(job.update().where(job.c.id.in_(marked)).values(attempts=1))


def downgrade() -> None:
    op.drop_column("job", "attempts")
