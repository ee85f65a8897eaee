"""The CI examples (examples/ci/): the commands they run are the ones these tests run against a live `dynds serve`
(embedded executor, tiny synthetic jobs), so the examples cannot drift from what works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from service_helpers import DYNDS, TINY_SPEC, serve, subprocess_env  # noqa: E402,F401  (serve: a fixture)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "ci"
# What both examples run: the dynds client, then curl alone.
GATE_COMMAND = 'dynds submit "$DYNDS_GATE_SPEC" --wait --require worth-it --min-seeds 3 --max-seeds 5'
CURL_COMMAND = 'sh examples/ci/gate.sh "$DYNDS_GATE_SPEC_JSON" --require worth-it --min-seeds 3 --max-seeds 5'
EXIT_DECISION = {0: "pass", 1: "fail", 3: "inconclusive"}


def example_commands() -> dict[str, list[str]]:
    """The gate commands of each example, in order: GitHub Actions' step `run`s, GitLab CI's `script` lines."""
    gh = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    gl = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    return {
        "github-actions.yml": [s["run"] for job in gh["jobs"].values() for s in job["steps"] if "--require" in s.get("run", "")],
        "gitlab-ci.yml": [line for job in gl.values() if isinstance(job, dict) for line in job.get("script", []) if "--require" in line],
    }


def test_the_examples_run_the_commands_the_tests_run():
    assert example_commands() == {"github-actions.yml": [GATE_COMMAND, CURL_COMMAND], "gitlab-ci.yml": [GATE_COMMAND, CURL_COMMAND]}
    gl = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert gl["dynds-gate"]["allow_failure"] == {"exit_codes": [3]}  # inconclusive: the code `dynds submit --help` gives it


def run(command: str, url: str, tmp_path: Path, spec: dict) -> subprocess.CompletedProcess:
    """``command`` as a pipeline runs it (bash, from the repository root), with the spec in both forms."""
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "gate.json").write_text(json.dumps(spec))
    env = subprocess_env(
        tmp_path,
        PATH=f"{Path(DYNDS).parent}{os.pathsep}{os.environ['PATH']}",
        DYNDS_SERVER=url,
        DYNDS_GATE_SPEC=str(tmp_path / "gate.yaml"),
        DYNDS_GATE_SPEC_JSON=str(tmp_path / "gate.json"),
        DYNDS_POLL_S="1",
    )
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def n_jobs(url: str) -> int:
    return httpx.get(f"{url}/api/v1/jobs", timeout=10).json()["count"]


def test_a_gate_over_two_seeds_decides_from_the_cli_then_from_curl_on_the_same_seeds(tmp_path, serve):
    """The default run's end-to-end gate: two tiny seeds (no-worse within 100 pt cannot miss), then curl's
    answer from the same finished seeds, and the CLI's again: no job run twice."""
    url = serve()
    flags = "--require no-worse --max-acc-drop 100 --min-seeds 2 --max-seeds 2"
    r = run(f'dynds submit "$DYNDS_GATE_SPEC" --wait {flags}', url, tmp_path, TINY_SPEC)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gate pass: No worse:" in r.stdout and "seed 1: done acc_delta" in r.stdout and "Traceback" not in r.stderr
    assert n_jobs(url) == 2
    r = run(f'sh examples/ci/gate.sh "$DYNDS_GATE_SPEC_JSON" {flags}', url, tmp_path, TINY_SPEC)
    assert r.returncode == 0 and r.stdout.startswith("gate pass: No worse:"), r.stdout + r.stderr
    r = run(f'dynds submit "$DYNDS_GATE_SPEC" --wait {flags}', url, tmp_path, TINY_SPEC)
    assert r.returncode == 0 and n_jobs(url) == 2, r.stdout + r.stderr
    r = run('sh examples/ci/gate.sh "$DYNDS_GATE_SPEC_JSON" --require no-worse --min-seeds 1', url, tmp_path, TINY_SPEC)
    assert r.returncode == 2 and "min_seeds" in r.stderr  # the server's 422, named


@pytest.mark.slow
def test_the_examples_commands_gate_a_tiny_setting_against_a_live_server(tmp_path, serve):
    """Both commands of the examples, as written: worth-it over 3 to 5 tiny seeds; the exit code is the decision
    printed, and curl's answer, from the same seeds, is the same decision with no job run twice. ~1-2 min."""
    url = serve()
    r = run(GATE_COMMAND, url, tmp_path, TINY_SPEC)
    assert r.returncode in EXIT_DECISION, r.stdout + r.stderr
    decision = EXIT_DECISION[r.returncode]
    assert f"\ngate {decision}: " in r.stdout and "equal_time_baseline set to true" in r.stdout
    jobs = n_jobs(url)
    assert 3 <= jobs <= 5
    r = run(CURL_COMMAND, url, tmp_path, TINY_SPEC)
    assert EXIT_DECISION.get(r.returncode) == decision and r.stdout.startswith(f"gate {decision}: "), r.stdout + r.stderr
    assert n_jobs(url) == jobs


def test_submit_help_documents_every_exit_code_the_gate_gives(capsys):
    from dynds.cli import main
    from dynds.commands.submit import GATE_EXIT

    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    text = capsys.readouterr().out
    codes = {line.split()[0] for line in text.split("exit codes:")[1].splitlines() if line[:3].strip().isdigit()}
    assert codes == {"0", "1", "2", "3", "4"} and {str(c) for c in GATE_EXIT.values()} <= codes
    assert "3  with --require: inconclusive" in text and "4  with --require: the gate could not decide" in text
