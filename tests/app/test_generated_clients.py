"""Clients generated from the live server's OpenAPI alone, as a team outside this repo would make them.

A real `dynds serve` (embedded executor, SQLite in tmp_path) answers /openapi.json; openapi-python-client
writes a Python package from it, which submits a tiny job, follows it to succeeded and reads its verdict
and the leaderboard; openapi-generator (typescript-fetch) writes a TypeScript client, and a small program
with it (submit a job, read its status) is type-checked by ``tsc --noEmit`` and then run by Node against
the same server. Either generator warning about the schema fails the test.

Needs the [test] extra (both generators; openapi-generator-cli brings its jar), Java for that jar, and
TypeScript (scripts/test.sh installs it into ~/.cache/dynds-test-npm, or set DYNDS_TEST_TSC): a skip
where one is missing, a failure in CI. ~25 s on a loaded 2-core machine.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from jsonschema_rs import Draft202012Validator  # schemathesis brings it ([test] extra)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from service_helpers import TINY_SPEC, serve  # noqa: E402,F401  (serve: a fixture)

VENV_BIN = Path(sys.executable).parent
TSC_CACHE = Path.home() / ".cache" / "dynds-test-npm" / "node_modules" / ".bin" / "tsc"
# openapi-generator's own notices, not about our schema (see docs/api.md, "Generated clients"):
GENERIC_WARNINGS = (
    "OpenAPI 3.1 support is still in beta",
    # its 3.1 parser meets `additionalProperties: false` (every body: unknown keys are refused) as a schema
    # without a name; a one-schema document with only that says the same
    "Failed to get the schema name: null",
)


def tool(name: str, why: str) -> str:
    path = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI ({why})")
        pytest.skip(f"{name} is not installed ({why})")
    return path


@pytest.fixture
def live(serve, tmp_path) -> tuple[str, Path]:
    """The server's base URL and its /openapi.json, saved in tmp_path."""
    url = serve()
    path = tmp_path / "openapi.json"
    path.write_text(httpx.get(f"{url}/openapi.json", timeout=10).raise_for_status().text)
    return url, path


def wait_finished(read, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = read()
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"the job did not finish in {timeout} s (last status {job.status})")


def test_the_python_client_generated_from_the_openapi_submits_and_follows_a_job(live, tmp_path):
    url, schema = live
    generator = tool("openapi-python-client", "pip install -e '.[test]'")
    # The venv first: the generator formats its output with ruff, and says so when ruff is missing.
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        [generator, "generate", "--path", str(schema), "--output-path", str(tmp_path / "dynds_generated"), "--meta", "none"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    output = out.stdout + out.stderr
    assert out.returncode == 0, output
    # "Unable to process schema", "Endpoint will not be generated", "cannot have a default value": all warnings
    assert "warning" not in output.lower() and "unable" not in output.lower(), output

    sys.path.insert(0, str(tmp_path))
    try:
        gen = importlib.import_module("dynds_generated")
        models = importlib.import_module("dynds_generated.models")
        submit = importlib.import_module("dynds_generated.api.jobs.submit_job")
        read_job = importlib.import_module("dynds_generated.api.jobs.read_job")
        validate = importlib.import_module("dynds_generated.api.meta.validate_spec")
        leaderboard = importlib.import_module("dynds_generated.api.results.leaderboard")
        importlib.import_module("dynds_generated.api.sweeps.create_sweep")
    finally:
        sys.path.remove(str(tmp_path))
    # every schema of the OpenAPI became a model, the spec's parts and the bodies that carry a spec included
    components = json.loads(schema.read_text())["components"]["schemas"]
    assert len(components) >= 25
    for name in ("JobSpec", "DynDSSpec", "StochasticSchedule", "PeriodicSchedule", "JobCreate", "SweepCreate", "ValidateRequest", "Problem"):
        assert hasattr(models, name), name
    # and every operation a function module (POST /sweeps and /specs/validate were skipped once)
    operations = sum(len(item) for item in json.loads(schema.read_text())["paths"].values())
    assert len([p for p in (tmp_path / "dynds_generated" / "api").rglob("*.py") if p.name != "__init__.py"]) == operations

    client = gen.AuthenticatedClient(base_url=url, token="unused", raise_on_unexpected_status=True)
    body = models.JobCreate.from_dict({"spec": TINY_SPEC})
    assert isinstance(body.spec, models.JobSpec)
    assert body.to_dict()["spec"] == TINY_SPEC  # what is sent is what was written: no default filled in
    checked = validate.sync(client=client, body=models.ValidateRequest.from_dict({"spec": TINY_SPEC}))
    assert not isinstance(checked, models.Problem), checked

    submitted = submit.sync(client=client, body=body)
    assert isinstance(submitted, models.JobSubmitted), submitted
    job = wait_finished(lambda: read_job.sync(job_id=submitted.id, client=client))
    assert job.status == "succeeded", job.error
    verdict = job.summary.to_dict()["verdict"]
    assert verdict in ("beats_equal_time", "loses_to_equal_time", "tie", "needs_seeds", "no_equal_time"), verdict

    board = leaderboard.sync(client=client, min_seeds=1)
    assert isinstance(board, models.LeaderboardPublic), board
    (cell,) = [cell for track in board.tracks for cell in track.entries if submitted.id in cell.job_ids]
    assert cell.verdict == verdict and cell.n_seeds == 1 and cell.time_saving_mean == job.summary.to_dict()["time_saving"]
    # the answer itself, against its schema (the route serves cached bytes: nothing else checks them)
    answer = httpx.get(f"{url}/api/v1/leaderboard", params={"min_seeds": 1}, timeout=10).json()
    Draft202012Validator({"$ref": "#/components/schemas/LeaderboardPublic", "components": {"schemas": components}}).validate(answer)


# TINY_SPEC, typed: the generated models name fields in camelCase and map them to the wire's snake_case.
TS_PROGRAM = """\
import { Configuration, JobsApi, JobSpec } from "./client";

const spec: JobSpec = {
  name: "tiny",
  model: { arch: "resnet20" },
  data: { dataset: "synthetic", imageSize: 16, syntheticSize: 128 },
  train: { epochs: 1, batchSize: 32, numThreads: 1 },
  dynds: { schedule: { kind: "stochastic", p: 0.5 } },
};

async function main(): Promise<void> {
  const jobs = new JobsApi(new Configuration({ basePath: "%(url)s" }));
  const submitted = await jobs.submitJob({ jobCreate: { spec } });
  const job = await jobs.readJob({ jobId: submitted.id });
  const status: string | undefined = job.status;
  console.log(JSON.stringify({ id: job.id, status, spec: job.spec }));
}

main();  // a rejection ends Node with an error
"""

TSCONFIG = {
    "compilerOptions": {
        "target": "ES2020",
        "module": "commonjs",
        "lib": ["ES2020", "DOM"],
        "strict": True,
        "skipLibCheck": True,
        "outDir": "out",
        "types": [],
    },
    "files": ["main.ts"],
}


def test_the_typescript_client_generated_from_the_openapi_type_checks_and_submits_a_job(live, tmp_path):
    url, schema = live
    tool("java", "apt-get install default-jre-headless: openapi-generator-cli runs a jar")
    generator = tool("openapi-generator-cli", "pip install -e '.[test]'")
    tsc = os.environ.get("DYNDS_TEST_TSC") or (str(TSC_CACHE) if TSC_CACHE.exists() else None) or tool("tsc", "npm install typescript")
    node = tool("node", "apt-get install nodejs")
    project = tmp_path / "ts"
    out = subprocess.run(
        [generator, "generate", "-g", "typescript-fetch", "-i", str(schema), "-o", str(project / "client")],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = out.stdout + out.stderr
    assert out.returncode == 0, output
    warnings = [line for line in output.splitlines() if " WARN " in line or "ERROR" in line]
    assert [w for w in warnings if not any(g in w for g in GENERIC_WARNINGS)] == [], output
    for model in ("JobSpec", "DynDSSpec", "StochasticSchedule", "SweepCreate", "ValidateRequest"):
        assert (project / "client" / "models" / f"{model}.ts").is_file(), model

    (project / "main.ts").write_text(TS_PROGRAM % {"url": url})
    (project / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    checked = subprocess.run([tsc, "--noEmit", "-p", str(project)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    built = subprocess.run([tsc, "-p", str(project)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    ran = subprocess.run([node, str(project / "out" / "main.js")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    answer = json.loads(ran.stdout.strip().splitlines()[-1])
    assert answer["id"] >= 1 and answer["status"] in ("queued", "running", "succeeded"), answer
    assert answer["spec"]["data"]["image_size"] == 16 and answer["spec"]["train"]["batch_size"] == 32, answer


def docs_example(heading: str) -> str:
    """The first python block after ``heading`` in docs/api.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    after = text[text.index(heading) :]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_of_our_own_client_runs_as_written(serve, capsys):
    example = docs_example("**The Python client of our own.**")
    assert len(example.strip().splitlines()) <= 12, example
    exec(compile(example, "docs/api.md", "exec"), {"SERVER": serve()})
    status, cells = capsys.readouterr().out.splitlines()
    assert status.startswith("succeeded "), status
    assert "stochastic" in cells, cells
