"""What the migration tests share: moving a database to a revision, and writing a job through the table as the
database has it at that revision (an older one lacks the newer columns the ORM model has)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, Table, select

from app import crud
from app.core.db import MIGRATIONS_DIR
from app.models import Job
from dynds_core.spec import JobSpec


def move(engine, direction: str, revision: str) -> None:
    """``alembic upgrade|downgrade revision`` on ``engine``."""
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)


def add_job(engine, seed: int, epochs: int = 2) -> tuple[int, Job]:
    """A queued job written through the table as the database has it now: (its id, the model it was made from)."""
    spec = JobSpec.parse({"train": {"seed": seed, "epochs": epochs}})
    job = Job(**crud.job_columns(spec), status="queued")
    table = Table("job", MetaData(), autoload_with=engine)
    values = {c.name: getattr(job, c.name) for c in table.columns if c.name != "id" and hasattr(job, c.name)}
    with engine.begin() as conn:
        return conn.execute(table.insert().values(**values).returning(table.c.id)).scalar_one(), job


def job_ids(engine) -> list[int]:
    """The ids of the jobs there, read through the table as the database has it now."""
    with engine.connect() as conn:
        return sorted(conn.execute(select(Table("job", MetaData(), autoload_with=engine).c.id)).scalars())
