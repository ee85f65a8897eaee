"""job.heartbeat_at: the worker's last sign of life, so a job whose worker died is failed instead of running forever

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 22:40:00.000000

Jobs running at upgrade time keep a NULL heartbeat: the check leaves them alone, since a worker of the
previous version may still be running them and would never write one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite has had ADD/DROP COLUMN since 3.35): a batch-mode table
# copy is not needed, and would trip over the foreign keys metric_point holds on a full job table.
def upgrade() -> None:
    op.add_column("job", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "heartbeat_at")
