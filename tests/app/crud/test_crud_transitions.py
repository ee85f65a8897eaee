"""app/crud/transitions.py: the lifecycle table checked against what every operation does from every state,
and against a table changed under it (a function that bypasses the table does not follow the change)."""

import ast
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from app import crud
from app.crud import transitions
from app.crud.transitions import TRANSITIONS, refusal
from app.models import JOB_STATES, Job, MetricPoint, as_utc, utcnow
from dynds_core.spec import JobSpec

LONG_AGO = utcnow() - timedelta(hours=1)
SENT = utcnow().replace(microsecond=0)
POINT = {"run": "dynds", "kind": "step", "step": 0, "values": {}}


def _give_up(policy):
    def call(s, job, result_for):
        return crud.give_up_run(session=s, job_id=job.id, error="lost", policy=policy, max_attempts=3) is not None

    return call


def _mark(s, job, result_for):
    crud.mark_dispatched(session=s, job_ids=[job.id], now=SENT)
    row = s.get(Job, job.id)
    s.refresh(row)
    return as_utc(row.heartbeat_at) == SENT


# Each action: the operations it tries (in order), what the job needs besides its state, and the call
# (True: it did something). Every operation of the table is in one action.
ACTIONS = {
    "claim": (("claim",), {}, lambda s, job, r: crud.claim_job(session=s, job_id=job.id, worker="w2") is not None),
    "finish": (("finish",), {}, lambda s, job, r: crud.finish_job(session=s, job_id=job.id, result=r(JobSpec()), attempt=1)),
    "finish_cancelled": (
        ("finish_cancelled",),
        {},
        lambda s, job, r: crud.finish_job(session=s, job_id=job.id, result=r(JobSpec(), cancelled=True), attempt=1),
    ),
    "fail": (("fail",), {}, lambda s, job, r: crud.fail_job(session=s, job_id=job.id, error="boom")),
    "fail_run": (("fail_run",), {}, lambda s, job, r: crud.fail_job(session=s, job_id=job.id, error="boom", attempt=1)),
    "cancel": (("cancel_queued", "flag_cancel"), {}, lambda s, job, r: crud.request_cancel(session=s, job=job) is not None),
    "requeue": (("requeue",), {}, lambda s, job, r: crud.requeue_job(session=s, job_id=job.id, attempt=1)),
    "give_up_requeue": (("give_up_requeue",), {}, _give_up("requeue")),
    "give_up_fail": (("give_up_fail",), {}, _give_up("fail")),
    "give_up_cancelled": (("give_up_cancelled",), {"cancel_requested": True}, _give_up("fail")),
    "retry": (("retry",), {}, lambda s, job, r: crud.retry_job_once(session=s, job=job)[1]),
    "delete": (("delete",), {}, lambda s, job, r: crud.delete_job(session=s, job_id=job.id) is not None),
    "mark_dispatched": (("mark_dispatched",), {}, _mark),
    "flush": (("flush",), {}, lambda s, job, r: crud.flush_metrics(session=s, job_id=job.id, points=[POINT], attempt=1)),
}
REFUSED_WITH_409 = ("cancel", "retry", "delete")  # the API's operations: refused with JobStateError, not a False


def _row(session, job_id):
    return session.execute(select(Job.__table__).where(Job.id == job_id)).mappings().first()


def _traces(session, job_id):
    """What an operation may leave besides the job's row: its metric points, a retry of it."""
    points = session.exec(select(MetricPoint.id).where(MetricPoint.job_id == job_id)).all()
    retries = session.exec(select(Job.id).where(Job.retry_of == job_id)).all()
    return len(points), len(retries)


def _did(op, session, job_id, before, after) -> bool:
    """Whether the row shows ``op`` done (from ``before``)."""
    t = TRANSITIONS[op]
    if op == "delete":
        return after is None
    if t.target is not None:
        return after["status"] == t.target
    if op == "flag_cancel":
        return after["cancel_requested"] and not before["cancel_requested"] and after["status"] == before["status"]
    if op == "retry":
        return _traces(session, job_id)[1] == 1
    if op == "flush":
        return _traces(session, job_id)[0] == 1
    return op == "mark_dispatched" and as_utc(after["heartbeat_at"]) == SENT


def check(action, state, session, new_job, set_columns, result_for, seed):
    """Put a job in ``state``, run ``action``: the first of its operations whose sources (in the table as it
    is now) hold ``state`` is done, leading to its target; when none does, nothing changes."""
    ops, extra, call = ACTIONS[action]
    job = new_job(train={"seed": seed})
    set_columns(job.id, status=state, attempts=1, worker="host:1:w", started_at=LONG_AGO, heartbeat_at=LONG_AGO, **extra)
    session.refresh(job)
    before, traces = dict(_row(session, job.id)), _traces(session, job.id)
    expected = next((op for op in ops if state in TRANSITIONS[op].sources), None)
    try:
        happened, error = call(session, job, result_for), None
    except crud.JobStateError as exc:
        happened, error = False, exc
    after = _row(session, job.id)
    where = f"{action} from {state} (table: {[TRANSITIONS[op] for op in ops]})"
    if expected is None:
        assert not happened, where
        assert after is not None and dict(after) == before and _traces(session, job.id) == traces, where
        if action in REFUSED_WITH_409:
            assert error is not None and str(error) == str(refusal(job.id, state, *ops)), where
    else:
        assert happened and error is None, where
        assert _did(expected, session, job.id, before, after), where
        assert all(not _did(op, session, job.id, before, after) for op in ops if op != expected and TRANSITIONS[op].target), where


def test_every_operation_of_the_table_is_checked():
    listed = [op for ops, _, _ in ACTIONS.values() for op in ops]
    assert sorted(listed) == sorted(TRANSITIONS)
    for t in TRANSITIONS.values():
        assert set(t.sources) <= set(JOB_STATES) and t.target in (*JOB_STATES, None)


def test_the_table_is_the_lifecycle_the_service_documents():
    """The table itself, written out: changing a transition is a decision, not an accident."""
    final = ("succeeded", "failed", "cancelled")
    assert {op: (t.sources, t.target) for op, t in TRANSITIONS.items()} == {
        "claim": (("queued",), "running"),
        "finish": (("running",), "succeeded"),
        "finish_cancelled": (("running",), "cancelled"),
        "fail": (("queued", "running"), "failed"),
        "fail_run": (("running",), "failed"),
        "cancel_queued": (("queued",), "cancelled"),
        "flag_cancel": (("running",), None),
        "requeue": (("running",), "queued"),
        "give_up_requeue": (("running",), "queued"),
        "give_up_fail": (("running",), "failed"),
        "give_up_cancelled": (("running",), "cancelled"),
        "retry": (("failed", "cancelled"), None),
        "delete": (final, None),
        "mark_dispatched": (("queued",), None),
        "flush": (("running", *final), None),
    }


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_operation_from_each_state_does_what_the_table_says(action, session, new_job, set_columns, result_for):
    for seed, state in enumerate(JOB_STATES):
        check(action, state, session, new_job, set_columns, result_for, seed)


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_operation_follows_the_table_when_it_changes(action, session, new_job, set_columns, result_for, monkeypatch):
    """Take each source state out of the table in turn: the operation must refuse that state now."""
    seed = 0
    for op in ACTIONS[action][0]:
        original = TRANSITIONS[op]
        for state in original.sources:
            monkeypatch.setitem(TRANSITIONS, op, dataclasses.replace(original, sources=tuple(s for s in original.sources if s != state)))
            check(action, state, session, new_job, set_columns, result_for, seed)
            seed += 1
        monkeypatch.setitem(TRANSITIONS, op, original)


def test_the_409_messages_come_from_the_table(session, new_job, set_columns):
    job = new_job()
    set_columns(job.id, status="succeeded")
    session.refresh(job)
    with pytest.raises(crud.JobStateError, match=f"^job {job.id} is succeeded: only queued or running jobs can be cancelled$"):
        crud.request_cancel(session=session, job=job)
    with pytest.raises(crud.JobStateError, match="only failed or cancelled jobs can be retried$"):
        crud.retry_job_once(session=session, job=job)
    set_columns(job.id, status="running")
    with pytest.raises(crud.JobStateError, match="only succeeded, failed or cancelled jobs can be deleted: cancel it and wait until it stops$"):
        crud.delete_job(session=session, job_id=job.id)


# ---------------------------------------------------------------- no state named outside the table

ROOT = Path(__file__).resolve().parents[3]
SCANNED = [p for d in ("app", "worker") for p in sorted((ROOT / d).rglob("*.py")) if "migrations" not in p.parts]
TABLE = Path(transitions.__file__).resolve()


def _writes(fn: ast.AST) -> bool:
    """The function issues an UPDATE or DELETE (``update(Job)``, ``delete(...)``, ``<table>.update()``)."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("update", "delete", "move"):
                return True
            if isinstance(f, ast.Attribute) and f.attr in ("update", "delete") and "table" in ast.unparse(f.value):
                return True
    return False


def state_literals(source: str) -> list[str]:
    """``function: 'state'`` for each job state named literally in a function that writes job rows, and
    for each ``status=<a state>`` keyword anywhere: those states must come from the table."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "status" and isinstance(node.value, ast.Constant) and node.value.value in JOB_STATES:
            found.append(f"status={node.value.value!r} (line {node.lineno})")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _writes(node):
            body = [n for stmt in node.body[1 if ast.get_docstring(node) else 0 :] for n in ast.walk(stmt)]
            found += [f"{node.name}: {n.value!r} (line {n.lineno})" for n in body if isinstance(n, ast.Constant) and n.value in JOB_STATES]
    return found


@pytest.mark.parametrize("path", [p for p in SCANNED if p.resolve() != TABLE], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_that_writes_jobs_names_a_state_outside_the_table(path):
    assert state_literals(path.read_text()) == []


def test_the_scan_finds_a_bypass():
    bypass = 'def claim(s, job_id):\n    s.execute(update(Job).where(col(Job.status) == "queued").values(worker="w"))\n'
    assert state_literals(bypass) == ["claim: 'queued' (line 2)"]
    assert state_literals('def f():\n    return dict(status="failed")\n') == ["status='failed' (line 2)"]
