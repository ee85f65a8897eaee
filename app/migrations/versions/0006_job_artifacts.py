"""artifact: the files a job left (its trained weights), with their size, sha256 and loading recipe

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:45:00.000000

One row per file under DYNDS_ARTIFACT_DIR (path relative to it); a job's rows go with the job
(DELETE /jobs/{id}). Downgrading drops the table only: the files stay on disk.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_artifact_job_id", "artifact", ["job_id"], unique=False)
    op.create_index("ix_artifact_created_at", "artifact", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_artifact_created_at", table_name="artifact")
    op.drop_index("ix_artifact_job_id", table_name="artifact")
    op.drop_table("artifact")
