"""worker: the fleet's registry (each worker's host, node name, pid, hardware, queues, current jobs, last seen)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:00:00.000000

One row per (host, name): a worker restarted under its node name takes its row back (no duplicates after a
SIGKILL and a restart). A new table only: nothing to fill from older rows; downgrading drops it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("hardware_key", sa.String(length=300), nullable=False),
        sa.Column("hardware_class", sa.String(length=300), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host", "name", name="uq_worker_host_name"),
    )
    op.create_index("ix_worker_last_seen", "worker", ["last_seen"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_worker_last_seen", table_name="worker")
    op.drop_table("worker")
