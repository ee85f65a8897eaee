"""Fuzzing the live app's OpenAPI with schemathesis (in-process, ASGI), on SQLite and PostgreSQL.

Every operation but the event stream (it stays open while its job is unfinished) gets generated
requests, valid and invalid (schemathesis' positive and negative modes), derandomized with a fixed
seed and ``MAX_EXAMPLES`` each: a few hundred requests per database, under a minute on a loaded
machine. A response fails the test when it is a 5xx, has a status the OpenAPI does not list for the
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
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


SKIP = ("/events",)  # streams: open while the job runs (tests/app/api/routes/test_hostile.py covers its parameters)


def has_inputs(op) -> bool:
    """Whether the operation takes any parameter or a body, i.e. whether an invalid request exists."""
    d = op.definition.raw
    return bool(d.get("parameters") or d.get("requestBody"))


def test_no_operation_answers_5xx_or_off_schema(app):
    from hypothesis import given
    from schemathesis.python import asgi

    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in loaded.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith(SKIP)]
    assert len(operations) >= 12, [op.label for op in operations]
    failures: dict[str, str] = {}
    calls = dict.fromkeys(GenerationMode, 0)
    no_negative: list[str] = []
    try:
        for op, mode in ((op, mode) for op in operations for mode in GenerationMode):

            @given(case=op.as_strategy(generation_mode=mode))
            @seed(SEED)
            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                calls[mode] += 1  # noqa: B023 - run() is called at once, in this iteration
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # an operation without parameters or body (/healthz) has no invalid request to build
                if mode is GenerationMode.POSITIVE or has_inputs(op):
                    raise
                no_negative.append(op.label)
            except Exception as exc:  # one operation's failure; the others still run
                failures[f"{op.label} ({mode})"] = str(exc)[:3000]
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan (started by the first request): engine disposed
    print(f"fuzz: {dict(calls)} requests over {len(operations)} operations; no invalid request for {no_negative}")
    # each mode reached every operation it can: a mode that generated nothing would pass silently
    assert calls[GenerationMode.POSITIVE] >= len(operations), calls
    assert calls[GenerationMode.NEGATIVE] >= len(operations) - len(no_negative) >= 10, (calls, no_negative)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
