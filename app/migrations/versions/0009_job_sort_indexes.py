"""job: an index per sortable column of the jobs list, and results versions kept by the database

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:30:00.000000

GET /jobs pages by keyset on (order column, id): one (column, id) index per order, so a page is an index
range scan whatever its depth; and indexes for the architecture and data set filters. results_version holds a
counter per stored track label and per frontier key, bumped by triggers whenever a succeeded job of it is
written, changed or deleted (whoever writes: the API, a worker, a bulk load): the results cache's key, read
per track instead of counting every succeeded job.
Upgrading fills the counters from the jobs already there; downgrading drops the triggers, the table and the
indexes (the jobs stay).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SORT_COLUMNS = (
    "name",
    "status",
    "track",
    "hardware_key",
    "schedule_kind",
    "created_at",
    "finished_at",
    "time_saving",
    "acc_delta",
    "equal_time_gap",
    "verdict",
)

# One bump per scope the row belongs to; OLD and NEW both, so a moved row invalidates both places.
_SQLITE_BUMP = """INSERT INTO results_version (scope, key, version) SELECT '{scope}', {row}.{column}, 1
    WHERE {row}.status = 'succeeded' AND {row}.{column} IS NOT NULL ON CONFLICT (scope, key) DO UPDATE SET version = version + 1;"""
SQLITE_TRIGGERS = {
    "job_results_insert": ("AFTER INSERT", "NEW.status = 'succeeded'", ("NEW",)),
    "job_results_update": ("AFTER UPDATE", "OLD.status = 'succeeded' OR NEW.status = 'succeeded'", ("OLD", "NEW")),
    "job_results_delete": ("AFTER DELETE", "OLD.status = 'succeeded'", ("OLD",)),
}
SCOPES = (("track", "track"), ("frontier", "frontier_key"))

PG_FUNCTION = """
CREATE FUNCTION job_results_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Statement-level, over the statement's transition tables: one bump per (scope, key) however many rows
    -- changed (a row-level bump updated one counter row per job: quadratic in a bulk insert or delete).
    IF TG_OP = 'INSERT' THEN
        WITH touched AS (SELECT track, frontier_key FROM new_rows WHERE status = 'succeeded')
        INSERT INTO results_version AS v (scope, key, version)
            SELECT 'track', track, 1 FROM touched UNION SELECT 'frontier', frontier_key, 1 FROM touched WHERE frontier_key IS NOT NULL
            ON CONFLICT (scope, key) DO UPDATE SET version = v.version + 1;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH touched AS (
            SELECT track, frontier_key FROM old_rows WHERE status = 'succeeded'
            UNION ALL SELECT track, frontier_key FROM new_rows WHERE status = 'succeeded'
        )
        INSERT INTO results_version AS v (scope, key, version)
            SELECT 'track', track, 1 FROM touched UNION SELECT 'frontier', frontier_key, 1 FROM touched WHERE frontier_key IS NOT NULL
            ON CONFLICT (scope, key) DO UPDATE SET version = v.version + 1;
    ELSE
        WITH touched AS (SELECT track, frontier_key FROM old_rows WHERE status = 'succeeded')
        INSERT INTO results_version AS v (scope, key, version)
            SELECT 'track', track, 1 FROM touched UNION SELECT 'frontier', frontier_key, 1 FROM touched WHERE frontier_key IS NOT NULL
            ON CONFLICT (scope, key) DO UPDATE SET version = v.version + 1;
    END IF;
    RETURN NULL;
END $$
"""
# Each with the transition tables its event has.
PG_TRIGGERS = {
    "job_results_insert": "AFTER INSERT ON job REFERENCING NEW TABLE AS new_rows",
    "job_results_update": "AFTER UPDATE ON job REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "job_results_delete": "AFTER DELETE ON job REFERENCING OLD TABLE AS old_rows",
}


# The jobs page's filters without an index before: a filter that selects one job in eight no longer reads the table.
FILTER_INDEXES = {"ix_job_arch_dataset": ["arch", "dataset"], "ix_job_dataset": ["dataset"]}


def upgrade() -> None:
    for column in SORT_COLUMNS:
        op.create_index(f"ix_job_{column}_id", "job", [column, "id"], unique=False)
    for name, columns in FILTER_INDEXES.items():
        op.create_index(name, "job", columns, unique=False)
    op.create_table(
        "results_version",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    for scope, column in SCOPES:
        op.execute(
            f"INSERT INTO results_version (scope, key, version) SELECT '{scope}', {column}, count(*) FROM job "
            f"WHERE status = 'succeeded' AND {column} IS NOT NULL GROUP BY {column}"
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for name, event in PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {event} FOR EACH STATEMENT EXECUTE FUNCTION job_results_bump()")
    else:
        for name, (when, cond, rows) in SQLITE_TRIGGERS.items():
            body = "\n".join(_SQLITE_BUMP.format(scope=scope, row=row, column=column) for row in rows for scope, column in SCOPES)
            op.execute(f"CREATE TRIGGER {name} {when} ON job FOR EACH ROW WHEN {cond}\nBEGIN\n{body}\nEND")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in PG_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON job" if postgres else f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS job_results_bump()")
    op.drop_table("results_version")
    for name in FILTER_INDEXES:
        op.drop_index(name, table_name="job")
    for column in SORT_COLUMNS:
        op.drop_index(f"ix_job_{column}_id", table_name="job")
