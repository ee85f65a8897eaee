"""Bytes a long job's metrics cost, before (one SQL row per step) and after the storage tiers (app/storage).

Claim (issue 18): a 450,000-step job (the DynDS run and its lockstep baseline, 450,000 steps each, as a
ResNet-50 ImageNet job of 90 epochs of 5,000 steps) stores ~900,000 step rows today, hundreds of MB in
PostgreSQL; with at most 2,000 step points per run in SQL (buckets of mean/min/max) and every step in a
zstd Parquet archive beside the weights, it takes a small fraction of that, nothing lost.

Method: the job's step points are generated (not trained) as the worker's sink makes them
(worker.sink.metric_point: loss as a float32 value, batch accuracy in percent, a cosine learning rate,
full/reduced batches, step times with jitter), plus one epoch point per epoch and run. Each layout is
inserted directly into a fresh, migrated database (PostgreSQL by COPY, SQLite by executemany):
- before: every step as a metric_point row;
- after: the rows the sink stores (app.storage.buckets.StepBuckets, max_points 2,000), and the Parquet
  archive app.storage.step_archive writes (chunks of 50,000 steps merged into steps.parquet).
PostgreSQL bytes are pg_total_relation_size('metric_point') (heap, TOAST, both indexes) after VACUUM,
minus the empty table's; SQLite bytes are the database's pages in use (page_count - freelist_count)
times page_size, minus the empty database's.

    .venv/bin/python bench/metric_storage.py [--steps 450000] [--runs 2] [--db both]

Output ends with one line `RESULT ...` per database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import sqlite3
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.storage.buckets import StepBuckets  # noqa: E402
from app.storage.step_archive import StepArchive, merge_chunks  # noqa: E402

RUNS = ("dynds", "baseline", "equal_time")
COLUMNS = ("job_id", "run", "kind", "step", "epoch", "train_time_s", "values")
COLUMN_LIST = ", ".join('"values"' if c == "values" else c for c in COLUMNS)  # values is a keyword


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=450_000, help="steps per run")
    p.add_argument("--runs", type=int, default=2, choices=(1, 2, 3), help="runs in the job (2: DynDS and its lockstep baseline)")
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--max-points", type=int, default=2000, help="step points per run kept in SQL")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--postgres-url", default=os.environ.get("DYNDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    return p.parse_args(argv)


def step_points(run: str, steps: int, epochs: int, seed: int):
    """One run's step points as worker.sink.metric_point makes them, in step order."""
    rng = random.Random(seed)
    per_epoch = math.ceil(steps / epochs)
    t = 0.0
    for step in range(steps):
        reduced = run == "dynds" and rng.random() < 0.5
        frac = step / steps
        loss = struct.unpack("f", struct.pack("f", 6.9 * math.exp(-4 * frac) + 0.6 + rng.gauss(0, 0.15)))[0]  # a float32, as torch gives
        acc = 100.0 * rng.randint(0, 256) / 256  # the batch's accuracy in percent, batch of 256
        lr = 0.1 * 0.5 * (1 + math.cos(math.pi * frac))
        step_time = (0.09 if reduced else 0.16) * (1 + rng.gauss(0, 0.05))
        t += step_time
        values = {"loss": loss, "acc": acc, "lr": lr, "batch_type": "reduced" if reduced else "full", "step_time_s": step_time}
        yield {"run": run, "kind": "step", "step": step, "epoch": step // per_epoch, "train_time_s": t, "values": values}


def epoch_points(run: str, steps: int, epochs: int):
    per_epoch = math.ceil(steps / epochs)
    for e in range(epochs):
        values = {
            "train_loss": 1.2345678,
            "train_acc": 71.234,
            "val_loss": 1.3456789,
            "val_acc": 70.123,
            "time_full_s": 1234.5678,
            "time_reduced_s": 567.891,
            "steps_full": 2500,
            "steps_reduced": 2500,
            "epochs": epochs,
        }
        yield {
            "run": run,
            "kind": "epoch",
            "step": min(steps, (e + 1) * per_epoch) - 1,
            "epoch": e,
            "train_time_s": 1000.0 * (e + 1),
            "values": values,
        }


def layouts(args, archive_dir: Path):
    """(before rows, after rows, parquet bytes, steps): the job's rows each way, and its archive's size."""
    before, after = [], []
    archive = StepArchive(archive_dir / "steps", attempt=1, chunk_rows=50_000)
    runs = RUNS[: args.runs]
    for i, run in enumerate(runs):
        buckets = StepBuckets(total_steps=args.steps, max_points=args.max_points)
        for p in step_points(run, args.steps, args.epochs, seed=i):
            before.append(p)
            archive.append(p)
            after.extend(buckets.add(p))
        epochs = list(epoch_points(run, args.steps, args.epochs))
        before.extend(epochs)
        after.extend(epochs)
    archive.flush()
    rows, size, _ = merge_chunks(archive_dir / "steps", archive_dir / "steps.parquet")
    assert rows == args.steps * len(runs), rows
    return before, after, size


def as_row(job_id: int, p: dict) -> tuple:
    # The stored JSON text as SQLAlchemy's JSON type writes it (json.dumps, default separators).
    return (job_id, p["run"], p["kind"], p["step"], p["epoch"], p["train_time_s"], json.dumps(p["values"]))


def new_database(url: str) -> int:
    """Migrate a fresh database and submit one job (the points' foreign key); its id."""
    from app import crud
    from app.core.db import init_db, make_engine, session_factory
    from dynds_core.spec import JobSpec

    engine = make_engine(url)
    init_db(engine)
    with session_factory(engine)() as session:
        job, _ = crud.submit_job(session=session, spec=JobSpec.parse({"name": "bench"}), force=True)
        job_id = int(job.id)
    engine.dispose()
    return job_id


def sqlite_bytes(rows: list[dict]) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as d:
        job_id = new_database(f"sqlite:///{d}/m.db")
        con = sqlite3.connect(f"{d}/m.db")

        def used() -> int:
            pages, free, size = (con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size"))
            return (pages - free) * size

        empty = used()
        t0 = time.perf_counter()
        con.executemany(f"INSERT INTO metric_point ({COLUMN_LIST}) VALUES (?, ?, ?, ?, ?, ?, ?)", (as_row(job_id, p) for p in rows))
        con.commit()
        took = time.perf_counter() - t0
        size = used() - empty
        con.close()
    return size, took


def pg_bytes(rows: list[dict], admin_url: str) -> tuple[int, float]:
    import psycopg

    from bench.service_process import pg_database

    with pg_database(admin_url, prefix="dynds_bench_storage") as url:
        job_id = new_database(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("VACUUM metric_point")
            empty = con.execute("SELECT pg_total_relation_size('metric_point')").fetchone()[0]
            t0 = time.perf_counter()
            with con.cursor() as cur, cur.copy(f"COPY metric_point ({COLUMN_LIST}) FROM STDIN") as copy:
                for p in rows:
                    copy.write_row(as_row(job_id, p))
            took = time.perf_counter() - t0
            con.execute("VACUUM metric_point")
            size = con.execute("SELECT pg_total_relation_size('metric_point')").fetchone()[0] - empty
    return size, took


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        before, after, parquet = layouts(args, Path(d))
        print(f"# generated {len(before):,} rows before / {len(after):,} after in {time.perf_counter() - t0:.1f} s")
    steps = args.steps * args.runs
    print(
        f"job: {args.runs} run(s) x {args.steps:,} steps = {steps:,} steps, {args.epochs} epochs; "
        f"SQL rows before {len(before):,}, after {len(after):,}"
    )
    print(f"step archive (steps.parquet, zstd): {mb(parquet)} ({parquet / steps:.2f} bytes a step)")
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    for kind in kinds:
        measure = sqlite_bytes if kind == "sqlite" else (lambda rows: pg_bytes(rows, args.postgres_url))
        b, tb = measure(before)
        a, ta = measure(after)
        print(
            f"{kind}: before {mb(b)} ({b / len(before):.0f} bytes a row, loaded in {tb:.1f} s); "
            f"after {mb(a)} in SQL + {mb(parquet)} Parquet = {mb(a + parquet)} ({(a + parquet) / b:.2%} of before)"
        )
        print(
            f"RESULT db={kind} steps={steps} before_bytes={b} after_sql_bytes={a} parquet_bytes={parquet} "
            f"after_bytes={a + parquet} ratio={(a + parquet) / b:.4f}"
        )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
