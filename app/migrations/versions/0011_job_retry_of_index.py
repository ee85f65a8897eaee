"""An index on job.retry_of, the job a retry was made from

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:00:00.000000

A foreign key to job.id: deleting a job (retention, a user's delete) makes the database look for jobs that
name it, and finding a job's retry does the same (app.crud.lifecycle). Without an index each look reads the
whole table, so deleting n jobs out of a million read the table n times.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_retry_of", "job", ["retry_of"])


def downgrade() -> None:
    op.drop_index("ix_job_retry_of", table_name="job")
