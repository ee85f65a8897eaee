"""app/gate.py's pure part: which jobs answer a seed, the cell's hardware, what to submit (POST /gate's tests
go through the database: tests/app/api/routes/test_gate_routes.py)."""

from app.gate import GatePlan, gate_state, seed_spec

CPU, GPU = "cpu · Test CPU · 1 thread", "cuda · Test GPU · x1"


def row(job_id, seed, status="succeeded", hardware=CPU, gap=None, delta=None, equal_time=True):
    return {"job_id": job_id, "seed": seed, "status": status, "hardware_key": hardware if status == "succeeded" else None,
            "equal_time_gap": gap, "acc_delta": delta, "time_saving": 0.3, "timing_noisy": False, "contended": False,
            "error": "boom" if status == "failed" else None, "spec": {"baseline": True, "equal_time_baseline": equal_time}}  # fmt: skip


def test_a_job_without_the_comparison_needed_does_not_answer_its_seed():
    plan = GatePlan("worth-it", min_seeds=2, max_seeds=3)
    rows = [row(1, 0, gap=1.0), row(2, 1, status="running", equal_time=False), row(3, 1, status="succeeded", gap=None, delta=0.1)]
    state = gate_state(plan, rows)
    assert [s.status for s in state.seeds] == ["done", "missing", "not_needed"] and state.to_submit == [1]
    assert gate_state(GatePlan("no-worse", min_seeds=2, max_seeds=3), rows).seeds[1].status == "done"  # no-worse needs only acc_delta


def test_repeated_runs_of_a_seed_are_averaged_and_the_majority_hardware_is_the_cells():
    plan = GatePlan("worth-it", min_seeds=2, max_seeds=2)
    rows = [row(1, 0, gap=1.0), row(2, 0, gap=2.0), row(3, 1, gap=0.5, hardware=GPU), row(4, 1, gap=3.0)]
    state = gate_state(plan, rows)
    assert state.hardware_key == CPU and [s.value for s in state.seeds] == [1.5, 3.0] and state.seeds[1].job_ids == [4]
    # One seed on each: a tie goes to the lowest seed's hardware; the other seed is elsewhere, an error.
    tie = gate_state(plan, [row(1, 0, gap=1.0, hardware=GPU), row(2, 1, gap=2.0)])
    assert tie.hardware_key == GPU and tie.seeds[1].status == "elsewhere" and tie.decision == "error"


def test_the_seed_spec_switches_on_the_comparison_and_sets_the_seed():
    canonical = {"name": "x", "train": {"seed": 0, "epochs": 2}, "baseline": False, "equal_time_baseline": False}
    assert seed_spec(canonical, 4, "worth-it") == {"name": "x", "train": {"seed": 4, "epochs": 2}, "baseline": True, "equal_time_baseline": True}
    assert seed_spec(canonical, 4, "no-worse")["equal_time_baseline"] is False and canonical["train"]["seed"] == 0
