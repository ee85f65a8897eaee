"""job_log: each job's log lines (INFO and above, bounded), as the process running it wrote them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:50:00.000000

Written by app.logs.JobLogCollector while a job runs (in batches, and at its end); served by
GET /api/v1/jobs/{id}/logs with ``seq`` as the cursor. A job's lines go with the job (ON DELETE CASCADE).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("logger", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_log_job_id_seq", "job_log", ["job_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_log_job_id_seq", table_name="job_log")
    op.drop_table("job_log")
