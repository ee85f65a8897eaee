"""initial schema: jobs (with summary columns and the active_hash dedup guard), metric points, sweeps, tokens, idempotency keys

Revision ID: 0001
Revises:
Create Date: 2026-11-25 21:53:44.278936
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "sweep",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "job",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("schedule_kind", sa.String(length=32), nullable=False),
        sa.Column("track", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("active_hash", sa.String(length=64), nullable=True),
        sa.Column("setting_key", sa.String(length=300), nullable=False),
        sa.Column("setting", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("reproducibility", sa.JSON(), nullable=True),
        sa.Column("time_saving", sa.Float(), nullable=True),
        sa.Column("acc_delta", sa.Float(), nullable=True),
        sa.Column("flop_saving", sa.Float(), nullable=True),
        sa.Column("equal_time_gap", sa.Float(), nullable=True),
        sa.Column("dynds_acc", sa.Float(), nullable=True),
        sa.Column("baseline_acc", sa.Float(), nullable=True),
        sa.Column("equal_time_acc", sa.Float(), nullable=True),
        sa.Column("dynds_time_s", sa.Float(), nullable=True),
        sa.Column("baseline_time_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["retry_of"],
            ["job.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweep.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_hash"),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index("ix_job_created_at", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_spec_hash"), ["spec_hash"], unique=False)
        batch_op.create_index("ix_job_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_job_status_finished", ["status", "finished_at"], unique=False)
        batch_op.create_index("ix_job_track_status", ["track", "status"], unique=False)

    op.create_table(
        "idempotency_key",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "metric_point",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("run", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("train_time_s", sa.Float(), nullable=True),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("metric_point", schema=None) as batch_op:
        batch_op.create_index("ix_metric_point_job_id_id", ["job_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("metric_point", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_point_job_id_id")

    op.drop_table("metric_point")
    op.drop_table("idempotency_key")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_track_status")
        batch_op.drop_index("ix_job_status_finished")
        batch_op.drop_index("ix_job_status_created")
        batch_op.drop_index(batch_op.f("ix_job_spec_hash"))
        batch_op.drop_index("ix_job_created_at")

    op.drop_table("job")
    op.drop_table("sweep")
    op.drop_table("api_token")
