"""job.stops: how many of a job's runs were stopped by their own process's shutdown (SIGTERM on a deploy)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 05:00:00.000000

Until now such a stop gave the attempt back (attempts - 1) so that a deploy would not use up a job's
DYNDS_MAX_ATTEMPTS; a job stopped once and resumed then showed one attempt for two runs, and the next run
was claimed under the stopped run's attempt number. Now ``attempts`` counts every run and ``stops`` the
graceful ones; the limit is on ``attempts - stops``. Existing rows: no stop recorded (0).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job", sa.Column("stops", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    # Counted as before: each stop gives its attempt back (every stop followed a claim, so this stays >= 0).
    job = sa.table("job", sa.column("attempts", sa.Integer), sa.column("stops", sa.Integer))
    op.get_bind().execute(job.update().where(job.c.stops > 0).values(attempts=job.c.attempts - job.c.stops))
    with op.batch_alter_table("job") as batch:
        batch.drop_column("stops")
