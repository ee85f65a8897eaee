"""job.hardware and job.hardware_key (what a job ran on: results are compared only under one hardware key),
job.contended; recipe hashes recomputed without where a job runs (train.device, train.num_threads)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:30:00.000000

Jobs stored before this get their hardware from their reproducibility record (device, device_name,
torch_threads, and the spec's train.num_threads, which the run used when set), computed by a frozen copy of
dynds_core.hardware's key rules; jobs that never ran, or whose record lacks those, get "unknown" when
they are finished and nothing while queued (the process that claims them records it). The recipe no longer
holds train.device and train.num_threads (the measured hardware is the other half of a track), so every
recipe_hash and frontier_key is recomputed here, as 0003 computed them, with the new rule.
Downgrading drops the columns and restores the old hashes.
"""

import hashlib
import json
import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UNKNOWN = "unknown"
_NOT_RECIPE = ("name", "dynds", "baseline", "equal_time_baseline")
# What the recipe left out of train before (0003: the seed) and after this revision (where the job ran too).
_NOT_TRAIN_BEFORE = ("seed",)
_NOT_TRAIN_AFTER = ("seed", "device", "num_threads", "hardware", "checkpoint_every_s")


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _keys(spec, not_train) -> tuple[str | None, str | None]:
    if isinstance(spec, str):
        spec = json.loads(spec)
    if not isinstance(spec, dict):
        return None, None
    recipe = {k: json.loads(json.dumps(v)) for k, v in spec.items() if k not in _NOT_RECIPE}
    if isinstance(recipe.get("train"), dict):
        for k in not_train:
            recipe["train"].pop(k, None)
    front = json.loads(json.dumps(recipe))
    if isinstance(front.get("train"), dict):
        front["train"].pop("epochs", None)
    return _hash(recipe), _hash(front)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _clean_cpu(name: str) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s+CPU\s*@.*$", "", name)
    name = re.sub(r"\s+@\s*[\d.]+\s*GHz$", "", name)
    name = re.sub(r"\s+(\d+-Core|Processor)\b.*$", "", name)
    return " ".join(name.split()) or "unknown CPU"


def hardware_from_record(record, spec) -> dict | None:
    """dynds_core.hardware.Hardware's fields from a reproducibility record of before 0007, or None."""
    if isinstance(record, str):
        record = json.loads(record)
    if isinstance(spec, str):
        spec = json.loads(spec)
    if not isinstance(record, dict) or not isinstance(record.get("device"), str) or not record.get("device_name"):
        return None
    device = record["device"].split(":")[0]
    if device not in ("cpu", "cuda", "mps"):
        return None
    train = spec.get("train") if isinstance(spec, dict) else None
    threads = (train or {}).get("num_threads") or record.get("torch_threads")
    threads = int(threads) if isinstance(threads, int) and threads > 0 else None
    if device == "cpu":
        model = _clean_cpu(str(record["device_name"]))
        n = threads or 1
        key = f"cpu · {model} · {n} thread{'s' if n != 1 else ''}"
        cls = f"cpu.{_slug(model)}.t{n}"
    else:
        model = str(record["device_name"])
        key, cls = f"{device} · {model} · x1", f"{device}.{_slug(model)}.x1"
    cudnn = record.get("cudnn")
    return {
        "key": key, "device": device, "model": model, "count": 1, "threads": threads, "memory_bytes": None,
        "torch": str(record.get("torch") or "").split("+")[0], "cuda": record.get("cuda"),
        "cudnn": str(cudnn) if cudnn is not None else None, "hardware_class": cls,
    }  # fmt: skip


def _table():
    return sa.table(
        "job",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("spec", sa.JSON),
        sa.column("reproducibility", sa.JSON),
        sa.column("recipe_hash", sa.String),
        sa.column("frontier_key", sa.String),
        sa.column("hardware", sa.JSON),
        sa.column("hardware_key", sa.String),
    )


def _rehash(conn, job, not_train) -> None:
    updates = []
    for job_id, spec in conn.execute(sa.select(job.c.id, job.c.spec)).all():
        try:
            rh, fk = _keys(spec, not_train)
        except (ValueError, TypeError):
            continue
        if rh is not None:
            updates.append({"job_id": job_id, "rh": rh, "fk": fk})
    if updates:
        stmt = job.update().where(job.c.id == sa.bindparam("job_id")).values(recipe_hash=sa.bindparam("rh"), frontier_key=sa.bindparam("fk"))
        conn.execute(stmt, updates)


def upgrade() -> None:
    op.add_column("job", sa.Column("hardware_key", sa.String(length=300), nullable=True))
    op.add_column("job", sa.Column("hardware", sa.JSON(), nullable=True))
    op.add_column("job", sa.Column("contended", sa.Boolean(), nullable=False, server_default=sa.false()))
    job = _table()
    conn = op.get_bind()
    updates = []
    rows = conn.execute(sa.select(job.c.id, job.c.status, job.c.spec, job.c.reproducibility)).all()
    for job_id, status, spec, record in rows:
        try:
            hw = hardware_from_record(record, spec)
        except (ValueError, TypeError):
            hw = None
        if hw is not None:
            updates.append({"job_id": job_id, "hw": hw, "key": hw["key"]})
        elif status in ("succeeded", "failed", "cancelled"):
            updates.append({"job_id": job_id, "hw": None, "key": UNKNOWN})
    if updates:
        stmt = job.update().where(job.c.id == sa.bindparam("job_id")).values(hardware=sa.bindparam("hw"), hardware_key=sa.bindparam("key"))
        conn.execute(stmt, updates)
    _rehash(conn, job, _NOT_TRAIN_AFTER)
    op.create_index("ix_job_hardware_status", "job", ["hardware_key", "status"])


def downgrade() -> None:
    _rehash(op.get_bind(), _table(), _NOT_TRAIN_BEFORE)
    op.drop_index("ix_job_hardware_status", table_name="job")
    for name in ("contended", "hardware", "hardware_key"):
        op.drop_column("job", name)
