import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dynds.cli import build_parser
from dynds_core.cli import apply_overrides, choose_threads, format_flops, write_atomic
from dynds_core.spec import JobSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]
DYNDS = ROOT / ".venv" / "bin" / "dynds"

TINY = {
    "name": "cli-tiny",
    "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 64},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.05, "device": "cpu"},
    "dynds": {"schedule": {"kind": "periodic", "every": 2}},
    "baseline": True,
}


def run_cli(*args, cwd=None):
    exe = [str(DYNDS)] if DYNDS.exists() else [sys.executable, "-m", "dynds"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(exe + ["train", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd or ROOT, env=env)


def test_train_end_to_end_writes_the_result(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out" / "result.json"
    proc = run_cli(spec, "--out", out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["spec_hash"] == JobSpec.parse(TINY).spec_hash
    assert res["baseline"]["steps"] == res["dynds"]["steps"] == 4
    assert res["dynds"]["steps_reduced"] == 2
    assert res["time_saving"] is not None and res["acc_delta"] is not None
    # the summary table goes to stderr
    assert "DynDS" in proc.stderr and "time saving" in proc.stderr


def test_train_prints_json_on_stdout_with_overrides(tmp_path, capsys):
    from dynds.cli import main

    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({**TINY, "baseline": False}))
    assert main(["train", str(spec), "--quiet", "--epochs", "2", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["spec"]["train"]["epochs"] == 2 and res["dynds"]["steps"] == 8
    assert res["baseline"] is None
    assert err == ""


def test_bad_spec_exits_2_naming_file_and_keys(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"train": {"epochs": 0, "optimiser": "sgd"}, "dynds": {"bn": "batch"}}))
    proc = run_cli(spec)
    assert proc.returncode == 2
    for needle in ("bad.yaml", "train.epochs", "train.optimiser", "dynds.bn"):
        assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_data_exits_2_with_where_it_looked(tmp_path, capsys):
    from dynds.cli import main

    spec = tmp_path / "nodata.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "data": {"dataset": "imagefolder", "root": str(tmp_path / "missing.tar.gz")}}))
    assert main(["train", str(spec), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "nodata.yaml" in err and "missing.tar.gz" in err and "data.root" in err
    assert "Traceback" not in err


def test_spec_file_missing_exits_2(tmp_path):
    proc = run_cli(tmp_path / "nope.yaml")
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_parser_registers_train():
    args = build_parser().parse_args(["train", "x.yaml", "--device", "cpu", "--epochs", "3"])
    assert args.func.__name__ == "run_train" and args.epochs == 3 and args.spec == "x.yaml"


def test_overrides_are_validated():
    spec = JobSpec.parse(TINY)
    assert apply_overrides(spec, device="cpu", epochs=5, source="s.yaml").train.epochs == 5
    assert apply_overrides(spec, device=None, epochs=None, source="s.yaml") is spec
    with pytest.raises(SpecError) as ei:
        apply_overrides(spec, device="tpu", epochs=0, source="s.yaml")
    assert {"train.device", "train.epochs"} <= {p for p, _ in ei.value.errors}
    assert "command-line overrides" in str(ei.value)


def test_threads_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(None, None) == 3
    assert choose_threads(2, None) == 2
    assert choose_threads(2, 5) == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert choose_threads(None, None) == (os.cpu_count() or 1)


def test_write_atomic_replaces_whole_file(tmp_path):
    p = tmp_path / "r.json"
    write_atomic(p, "one")
    write_atomic(p, "two")
    assert p.read_text() == "two"
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_format_flops():
    assert format_flops(31.2e9) == "31.2 GFLOP"
    assert format_flops(1.5e12) == "1.5 TFLOP"
    assert format_flops(None) == "n/a"


def _tiny_spec_with_train(tmp_path, monkeypatch, fake_train):
    """TINY written to tmp_path/tiny.yaml, with dynds_core.trainer.train replaced by ``fake_train``."""
    from dynds_core import trainer

    monkeypatch.setattr(trainer, "train", fake_train)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    return spec


def test_refused_model_exits_2_in_process(tmp_path, monkeypatch, capsys):
    from dynds.cli import main
    from dynds_core.reduced import ReducedPassError

    def refuse(*a, **k):
        raise ReducedPassError("layer 'fc' (Linear, in_features=4096) needs a fixed spatial input size")

    spec = _tiny_spec_with_train(tmp_path, monkeypatch, refuse)
    assert main(["train", str(spec), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "tiny.yaml" in err and "model.arch" in err and "'fc'" in err


def test_dynds_train_turns_the_measured_process_settings_on(tmp_path, monkeypatch):
    """The library leaves the process alone unless asked; a command-line run owns its process and asks."""
    from dynds.cli import main
    from dynds_core.trainer import ProcessSettings

    class Asked(Exception):
        pass

    seen = {}

    def fake_train(spec, callbacks=None, **kw):
        seen.update(kw)
        raise Asked

    spec = _tiny_spec_with_train(tmp_path, monkeypatch, fake_train)
    with pytest.raises(Asked):
        main(["train", str(spec), "--quiet", "--threads", "1"])
    assert seen["process"] == ProcessSettings.measured()
    assert ProcessSettings() == ProcessSettings(retain_memory=False, pause_collector=False, cudnn_benchmark=False)


def test_unwritable_out_exits_2_before_training(tmp_path, monkeypatch, capsys):
    from dynds.cli import main

    def must_not_train(*a, **k):
        raise AssertionError("trained although the result could not be written")

    spec = _tiny_spec_with_train(tmp_path, monkeypatch, must_not_train)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker / "result.json", tmp_path):  # a folder under a file; a folder itself
        assert main(["train", str(spec), "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and str(out) in err and "Traceback" not in err


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_bad_thread_count_is_a_usage_error(threads, capsys):
    with pytest.raises(SystemExit) as ei:
        build_parser().parse_args(["train", "x.yaml", "--threads", threads])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and threads in err and "Traceback" not in err


def test_summary_names_what_sized_the_equal_time_run():
    from rich.console import Console

    from dynds_core.cli import summary_table
    from dynds_core.result import JobResult, RunResult

    res = JobResult(
        spec_hash="x",
        spec={"name": "s"},
        device="cpu",
        dynds=RunResult(run="dynds"),
        equal_time=RunResult(run="equal_time"),
        equal_time_gap=-1.5,
        equal_time_sizing="own_full_steps",
    )
    console = Console(width=300, record=True, file=io.StringIO())
    console.print(summary_table(res))
    assert (
        "equal-time gap -1.50 pt: DynDS's accuracy minus the baseline trained for DynDS's train time "
        "(its steps cut to match, sized by the DynDS run's own full steps)"
    ) in console.export_text()


def test_summary_explains_every_figure_and_gives_the_verdict():
    """No bare '-' or 'target': each figure says what it is; the verdict sentence comes first."""
    from dynds_core.cli import summary_lines
    from dynds_core.result import EpochMetrics, RunResult
    from dynds_core.spec import JobSpec
    from dynds_core.trainer import compare

    def run(kind, acc, t, full, reduced):
        e = EpochMetrics(
            run=kind,
            epoch=0,
            epochs=1,
            train_loss=1,
            train_acc=50,
            val_loss=1,
            val_acc=acc,
            train_time_s=t,
            time_full_s=t if not reduced else t * 0.6,
            time_reduced_s=0 if not reduced else t * 0.4,
            steps_full=full,
            steps_reduced=reduced,
        )
        return RunResult(
            run=kind,
            epochs=[e],
            steps=full + reduced,
            steps_full=full,
            steps_reduced=reduced,
            train_time_s=e.train_time_s,
            time_full_s=e.time_full_s,
            time_reduced_s=e.time_reduced_s,
            final_val_acc=acc,
            total_flops=9.0 * full + reduced,
        )

    spec = JobSpec.parse({"equal_time_baseline": False})
    runs = run("dynds", 60.0, 6.4, 5, 5), run("baseline", 65.6, 10.0, 10, 0), None
    res = compare(spec, "cpu", *runs, pairing="lockstep", lockstep_ratio=0.63)
    lines = summary_lines(res)
    assert lines[0].startswith("Verdict: Not conclusive: 37 % less time for 5.6 pt less accuracy, but no equal-time baseline ran")
    text = "\n".join(lines)
    assert (
        "time saving +37.0%: 1 - DynDS train time / paired baseline train time, from each DynDS step against the baseline's "
        "steps around it (the median per batch type; lockstep:"
    ) in text
    assert "total-time saving +36.0%: the same ratio from the two runs' total train times" in text
    # without the paired steps' ratio (sequential, or a result built by hand) there is one figure
    plain = "\n".join(summary_lines(compare(spec, "cpu", *runs, pairing="sequential")))
    assert "time saving +36.0%: 1 - DynDS train time / paired baseline train time (sequential:" in plain
    assert "total-time" not in plain
    assert "cross-check" in text and "accuracy delta -5.60 pt" in text
    assert "equal-time gap: not run (set equal_time_baseline: true" in text
    assert "time to target: train time until the validation accuracy first reached 60.00% (the lowest final accuracy among the runs)" in text
    assert " - " not in text.replace("1 - ", "") and " pp" not in text


def test_checkpoint_dir_and_resume_reach_train(tmp_path, monkeypatch):
    from dynds.cli import main

    class Asked(Exception):
        pass

    seen = {}

    def fake_train(spec, callbacks=None, **kw):
        seen.update(kw)
        raise Asked

    spec = _tiny_spec_with_train(tmp_path, monkeypatch, fake_train)
    with pytest.raises(Asked):
        main(["train", str(spec), "--quiet", "--threads", "1", "--checkpoint-dir", str(tmp_path / "ck"), "--resume", str(tmp_path / "old")])
    assert seen["checkpoint_dir"] == str(tmp_path / "ck") and seen["resume_from"] == str(tmp_path / "old")


def test_resume_without_a_usable_checkpoint_exits_2_naming_the_directory(tmp_path, capsys):
    from dynds.cli import main

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(spec), "--quiet", "--threads", "1", "--resume", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "no usable checkpoint" in err and "none" in err
