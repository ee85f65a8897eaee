"""app/crud/submission.py: deduplication by spec hash and the columns a job row carries."""

from app import crud
from dynds_core.spec import JobSpec


def _run(session, job, result_for):
    assert crud.claim_job(session=session, job_id=job.id, worker="w") is not None
    spec = JobSpec.parse(job.spec)
    assert crud.finish_job(session=session, job_id=job.id, result=result_for(spec, timing_noisy=True, verdict="needs_seeds"))
    session.refresh(job)
    return job


def test_a_succeeded_adaptive_job_does_not_answer_a_resubmission(session, result_for):
    adaptive = JobSpec.parse({"dynds": {"schedule": {"kind": "adaptive", "window": 10}}})
    first, outcome = crud.submit_job(session=session, spec=adaptive)
    assert outcome == "created"
    # While it is queued (or running), an identical submission is answered with it.
    again, outcome = crud.submit_job(session=session, spec=adaptive)
    assert outcome == "deduplicated" and again.id == first.id
    first = _run(session, first, result_for)
    assert first.status == "succeeded" and first.active_hash is None
    assert first.timing_noisy is True and first.verdict == "needs_seeds"
    # Succeeded: it is a measurement, not a function of the spec: a new submission runs again.
    second, outcome = crud.submit_job(session=session, spec=adaptive)
    assert outcome == "created" and second.id != first.id and second.active_hash == adaptive.spec_hash
    third, outcome = crud.submit_job(session=session, spec=adaptive)
    assert outcome == "deduplicated" and third.id == second.id


def test_a_succeeded_fixed_schedule_job_still_answers_a_resubmission(session, result_for):
    spec = JobSpec.parse({"dynds": {"schedule": {"kind": "stochastic", "p": 0.4}}})
    first, _ = crud.submit_job(session=session, spec=spec)
    first = _run(session, first, result_for)
    assert first.active_hash == spec.spec_hash
    again, outcome = crud.submit_job(session=session, spec=spec)
    assert outcome == "deduplicated" and again.id == first.id


def test_job_rows_carry_recipe_and_frontier_keys(session, new_job):
    from app.leaderboard import frontier_key, recipe_hash

    job = new_job(train={"epochs": 5, "seed": 3})
    assert job.recipe_hash == recipe_hash(job.spec) and job.frontier_key == frontier_key(job.spec)
    retried, _ = crud.retry_job_once(session=session, job=crud.request_cancel(session=session, job=job))
    assert retried.recipe_hash == job.recipe_hash and retried.frontier_key == job.frontier_key
