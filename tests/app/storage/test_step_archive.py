"""The step archive's files (app/storage/step_archive.py): chunks written whole, pruned past a checkpoint as
crud.resume_run prunes SQL points, merged into one Parquet file in order with a later attempt winning."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from app.storage.step_archive import COLUMNS, StepArchive, chunk_files, merge_chunks, prune_chunks


def _point(run: str, step: int) -> dict:
    values = {"loss": step / 10, "acc": 50.0, "lr": 0.1, "batch_type": "full", "step_time_s": 0.01}
    return {"run": run, "kind": "step", "step": step, "epoch": step // 10, "train_time_s": step * 0.01, "values": values}


def _write(directory, attempt: int, runs: dict[str, range], chunk_rows: int = 7) -> StepArchive:
    a = StepArchive(directory, attempt=attempt, chunk_rows=chunk_rows)
    for step in range(max(r.stop for r in runs.values())):
        for run, steps in runs.items():
            if step in steps:
                a.append(_point(run, step))
    a.flush()
    return a


def _steps(path, run: str) -> list[int]:
    return [r["step"] for r in pq.read_table(path).to_pylist() if r["run"] == run]


def test_chunks_hold_at_most_chunk_rows_and_merge_into_every_step_in_order(tmp_path):
    a = _write(tmp_path / "steps", 1, {"baseline": range(30), "dynds": range(30)})
    files = chunk_files(tmp_path / "steps")
    assert len(files) == 9 and all(pq.read_metadata(f).num_rows <= 7 for f in files) and a.rows_written == 60
    rows, size, _ = merge_chunks(tmp_path / "steps", tmp_path / "steps.parquet")
    assert rows == 60 and size == (tmp_path / "steps.parquet").stat().st_size
    assert _steps(tmp_path / "steps.parquet", "dynds") == list(range(30))
    assert pq.read_schema(tmp_path / "steps.parquet").names == list(COLUMNS)
    assert pq.read_metadata(tmp_path / "steps.parquet").row_group(0).column(4).compression == "ZSTD"


def test_pruning_keeps_what_the_checkpoint_covers_as_resume_run_does(tmp_path):
    d = tmp_path / "steps"
    _write(d, 1, {"baseline": range(30), "dynds": range(30), "equal_time": range(10)})
    # baseline held as finished (None), dynds in flight at step 20, equal_time not named: from scratch.
    assert prune_chunks(d, {"baseline": None, "dynds": (20, 2)}) == 10 + 10
    merge_chunks(d, tmp_path / "out.parquet")
    assert _steps(tmp_path / "out.parquet", "baseline") == list(range(30))
    assert _steps(tmp_path / "out.parquet", "dynds") == list(range(20))
    assert _steps(tmp_path / "out.parquet", "equal_time") == []
    assert prune_chunks(d, {}) == 50 and chunk_files(d) == []  # from scratch: nothing of attempt 1 stays


def test_a_later_attempt_wins_over_one_given_up_on_that_went_on_writing(tmp_path):
    d = tmp_path / "steps"
    _write(d, 1, {"dynds": range(25)})  # a zombie attempt 1 went on to step 24
    _write(d, 2, {"dynds": range(20, 40)})  # attempt 2 resumed at 20
    rows, _, _ = merge_chunks(d, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert rows == 40 and [r["step"] for r in table] == list(range(40))
    assert {r["attempt"] for r in table if r["step"] >= 20} == {2}


def test_a_new_archive_numbers_its_chunks_after_those_of_its_attempt(tmp_path):
    d = tmp_path / "steps"
    _write(d, 3, {"dynds": range(7)})
    again = StepArchive(d, attempt=3, chunk_rows=7)
    again.append(_point("dynds", 7))
    assert again.flush().name == "chunk-a003-000002.parquet"
    with pytest.raises(ValueError, match="chunk_rows must be at least 1: 0"):
        StepArchive(d, attempt=1, chunk_rows=0)
