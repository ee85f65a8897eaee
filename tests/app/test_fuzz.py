"""Fuzzing the live app's OpenAPI with schemathesis (in-process, ASGI), on SQLite and PostgreSQL.

Every operation but the event stream (it stays open while its job is unfinished) gets generated
requests, valid and invalid (schemathesis' positive and negative modes), derandomized with a fixed
seed and ``MAX_EXAMPLES`` each: about 1,900 requests per database, 15-30 s on a loaded 2-core machine.
The doors that take a spec (POST /specs/validate, /jobs, /sweeps) then get valid specs of their own,
``SPEC_EXAMPLES`` on each of ``SPEC_SEEDS``: the 500s a 37,000-request run found there (a 1x1 reduced
input, a periodic schedule with every: null, a pooling window past the kernel) sit in corners of the
JobSpec schema that 50 examples do not reach; 1,800 more requests per database, 20-35 s. ``-m slow`` runs
``SLOW_SPEC_EXAMPLES`` on ``SLOW_SPEC_SEEDS``: 15,000 requests per database, ~3 minutes.

A response fails the test when it is a 5xx, has a status the OpenAPI does not list for the
operation, a content type it does not list, or a body its schema does not admit (so the problem
details of every error are checked against the documented Problem schema too).
"""

from __future__ import annotations

import os

import pytest

try:
    import schemathesis
except ImportError:  # a test dependency ([test] extra); CI must have it
    if os.environ.get("CI"):
        raise
    pytest.skip("schemathesis is not installed (pip install -e '.[test]')", allow_module_level=True)
from hypothesis import HealthCheck, Phase, seed, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 50
SEED = 20261201
SPEC_DOORS = ("POST /api/v1/specs/validate", "POST /api/v1/jobs", "POST /api/v1/sweeps")
SPEC_EXAMPLES, SPEC_SEEDS = 300, (SEED, SEED + 1)
SLOW_SPEC_EXAMPLES, SLOW_SPEC_SEEDS = 1000, tuple(SEED + i for i in range(5))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


SKIP = ("/events",)  # streams: open while the job runs (tests/app/api/routes/test_hostile.py covers its parameters)


def has_inputs(op) -> bool:
    """Whether the operation takes any parameter or a body, i.e. whether an invalid request exists."""
    d = op.definition.raw
    return bool(d.get("parameters") or d.get("requestBody"))


def fuzz(op, mode: GenerationMode, *, examples: int, seed_value: int) -> int:
    """Call ``op`` with ``examples`` generated requests of ``mode`` (derandomized by ``seed_value``), checking
    each response; returns how many were made. Raises on the first failing check."""
    from hypothesis import given

    calls = 0

    @given(case=op.as_strategy(generation_mode=mode))
    @seed(seed_value)
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        nonlocal calls
        calls += 1
        case.call_and_validate(checks=CHECKS)

    run()
    return calls


def operations(app) -> list:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [op for op in (r.ok() for r in loaded.get_all_operations()) if not op.path.endswith(SKIP)]


def test_no_operation_answers_5xx_or_off_schema(app):
    from schemathesis.python import asgi

    ops = operations(app)
    assert len(ops) >= 12, [op.label for op in ops]
    failures: dict[str, str] = {}
    calls = dict.fromkeys(GenerationMode, 0)
    no_negative: list[str] = []
    try:
        for op, mode in ((op, mode) for op in ops for mode in GenerationMode):
            try:
                calls[mode] += fuzz(op, mode, examples=MAX_EXAMPLES, seed_value=SEED)
            except Unsatisfiable:
                # an operation without parameters or body (/healthz) has no invalid request to build
                if mode is GenerationMode.POSITIVE or has_inputs(op):
                    raise
                no_negative.append(op.label)
            except Exception as exc:  # one operation's failure; the others still run
                failures[f"{op.label} ({mode})"] = str(exc)[:3000]
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan (started by the first request): engine disposed
    print(f"fuzz: {dict(calls)} requests over {len(ops)} operations; no invalid request for {no_negative}")
    # each mode reached every operation it can: a mode that generated nothing would pass silently
    assert calls[GenerationMode.POSITIVE] >= len(ops), calls
    assert calls[GenerationMode.NEGATIVE] >= len(ops) - len(no_negative) >= 10, (calls, no_negative)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def fuzz_spec_doors(app, examples: int, seeds: tuple[int, ...]) -> None:
    from schemathesis.python import asgi

    doors = [op for op in operations(app) if op.label in SPEC_DOORS]
    assert sorted(op.label for op in doors) == sorted(SPEC_DOORS)
    failures: dict[str, str] = {}
    calls = 0
    try:
        for op, seed_value in ((op, s) for op in doors for s in seeds):
            try:
                calls += fuzz(op, GenerationMode.POSITIVE, examples=examples, seed_value=seed_value)
            except Exception as exc:
                failures[f"{op.label} (seed {seed_value})"] = str(exc)[:3000]
    finally:
        asgi.shutdown_lifespans()
    print(f"fuzz: {calls} valid-spec requests to {len(doors)} spec doors over {len(seeds)} seeds")
    assert calls >= len(doors) * len(seeds), calls
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_the_spec_doors_answer_valid_specs_without_5xx(app):
    fuzz_spec_doors(app, SPEC_EXAMPLES, SPEC_SEEDS)


@pytest.mark.slow
def test_the_spec_doors_answer_many_valid_specs_without_5xx(app):
    fuzz_spec_doors(app, SLOW_SPEC_EXAMPLES, SLOW_SPEC_SEEDS)
