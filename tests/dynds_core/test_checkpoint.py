"""Checkpoints: the file format and its faults, and a job interrupted and resumed ending exactly where the same
job run in one go ends (CPU, one torch thread)."""

import logging

import pytest
import torch
from test_trainer import tiny_spec

from dynds_core import schedules, trainer
from dynds_core.callbacks import Callback
from dynds_core.schedules import make_schedule
from dynds_core.trainer import train
from dynds_core.training import loop, timing
from dynds_core.training.checkpoint import (
    FORMAT_VERSION,
    MAGIC,
    Checkpointer,
    CheckpointError,
    decode,
    encode,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # bit for bit needs the same reduction order in both processes' kernels
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------


def test_encode_decode_round_trip_with_header():
    payload = {"w": torch.arange(6.0).view(2, 3), "step": 7, "rng": (3, (1, 2), None)}
    header, back = decode(encode(payload, {"spec_hash": "abc", "phase": "lockstep"}))
    assert header["format"] == FORMAT_VERSION and header["spec_hash"] == "abc" and header["phase"] == "lockstep"
    assert torch.equal(back["w"], payload["w"]) and back["step"] == 7 and back["rng"] == (3, (1, 2), None)


def test_truncated_corrupt_and_foreign_files_are_refused():
    data = encode({"w": torch.ones(100)}, {"spec_hash": "abc"})
    with pytest.raises(CheckpointError, match="truncated"):
        decode(data[:-10])
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    with pytest.raises(CheckpointError, match="checksum"):
        decode(bytes(flipped))
    with pytest.raises(CheckpointError, match="not a DynDS checkpoint"):
        decode(b"PK\x03\x04 a zip")
    newer = data.replace(f'"format": {FORMAT_VERSION}'.encode(), b'"format": 99', 1)
    with pytest.raises(CheckpointError, match="format 99; this version of dynds reads format 1"):
        decode(newer)


def test_checkpointer_keeps_the_last_two_and_leaves_no_temporary_file(tmp_path):
    saver = Checkpointer(tmp_path, "abc", every_s=0)
    for i in range(4):
        saver.save({"i": i})
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt-000003.dynds", "ckpt-000002.dynds"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no .tmp left behind
    assert read_checkpoint(tmp_path / names[0], "abc").payload == {"i": 3}
    assert not saver.due()  # every_s=0: only when asked
    # a new saver in the same directory numbers after what is there
    assert Checkpointer(tmp_path, "abc").save({"i": 4}).name == "ckpt-000004.dynds"


def test_a_corrupt_newest_checkpoint_is_named_and_the_one_before_used(tmp_path, caplog):
    saver = Checkpointer(tmp_path, "abc")
    saver.save({"i": 0})
    newest = saver.save({"i": 1})
    newest.write_bytes(newest.read_bytes()[: len(MAGIC) + 40])  # killed mid-write without the atomic rename
    with caplog.at_level(logging.WARNING):
        ckpt = load_checkpoint(tmp_path, "abc")
    assert ckpt.payload == {"i": 0}
    assert newest.name in caplog.text and "trying the one before" in caplog.text


def test_a_checkpoint_of_another_spec_is_refused_with_both_hashes(tmp_path):
    Checkpointer(tmp_path, "abc").save({"i": 0})
    with pytest.raises(CheckpointError, match="belongs to spec abc, not to this one \\(def\\)"):
        load_checkpoint(tmp_path, "def")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_checkpoint(tmp_path / "empty", "abc")


def test_a_full_disk_stops_checkpointing_not_the_job(tmp_path, monkeypatch, caplog):
    from dynds_core.training import checkpoint

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_atomic", full)
    saver = Checkpointer(tmp_path, "abc", every_s=1e-9)
    with caplog.at_level(logging.WARNING):
        assert saver.save({"i": 0}) is None
    assert "checkpointing stopped" in caplog.text and not saver.enabled and not saver.due()


def test_checkpoint_cadence_is_not_part_of_the_spec_hash():
    assert tiny_spec(train={"checkpoint_every_s": 5}).spec_hash == tiny_spec().spec_hash
    assert tiny_spec().train.checkpoint_every_s == 600


# ---------------------------------------------------------------------------------------------
# The adaptive schedule's state
# ---------------------------------------------------------------------------------------------


def test_adaptive_schedule_state_continues_the_same_decisions():
    """What is exact for the adaptive schedule: given the same signals, a schedule restored from another's
    state decides as that one does (its EMAs, their counts and the last step carried over)."""
    spec = {"kind": "adaptive", "p_min": 0.0, "p_max": 1.0, "window": 5}
    # two of each type in a row: progress is credited across consecutive steps of one type
    signals = [("full", 2.0 - 0.05 * i, 0.2) if i % 4 < 2 else ("reduced", 2.0 - 0.01 * i, 0.05) for i in range(40)]
    a = make_schedule(spec, 100, seed=3)
    for s in signals[:30]:
        a.observe(*s)
    b = make_schedule(spec, 100, seed=3)
    b.load_state_dict(a.state_dict())
    assert b.current_p() == a.current_p() != 0.5  # past the midpoint: the signals decided it
    for i, s in enumerate(signals[30:]):
        a.observe(*s)
        b.observe(*s)
        assert b.decide(60 + i) == a.decide(60 + i)
    with pytest.raises(ValueError, match="cannot continue"):
        make_schedule({"kind": "stochastic"}, 100).load_state_dict(a.state_dict())


# ---------------------------------------------------------------------------------------------
# Resumed equals uninterrupted
# ---------------------------------------------------------------------------------------------


class Steps(Callback):
    """Every step seen, as (run, step, batch type, loss); stops once ``stop_at`` = (run, step) has run."""

    def __init__(self, stop_at: tuple[str, int] | None = None):
        self.seen: list[tuple[str, int, str, float]] = []
        self.stop_at = stop_at

    def on_step(self, m):
        self.seen.append((m.run, m.step, m.batch_type, m.loss))

    def should_stop(self):
        return self.stop_at is not None and any((r, s) == self.stop_at for r, s, _, _ in self.seen)


def _fixed_lockstep_ratio(monkeypatch, ratio=0.75):
    """The equal-time run's length comes from measured step times, which two processes never repeat: fixed
    here so that both jobs give it the same number of steps (what resuming must keep is tested, not the clock)."""
    monkeypatch.setattr(trainer, "lockstep_time_ratio", lambda *a: ratio)


def _run_interrupted(spec, stop_at, tmp_path):
    """The job stopped after ``stop_at`` with a checkpoint, then resumed: (result, every step seen)."""
    first = Steps(stop_at)
    stopped = train(spec, first, checkpoint_dir=tmp_path, keep_baseline_model=True)
    assert stopped.cancelled and list_checkpoints(tmp_path)
    rest = Steps()
    resumed = train(spec, rest, resume_from=tmp_path, keep_baseline_model=True)
    return resumed, first.seen + rest.seen


def _assert_same_job(a, seen_a, b, seen_b):
    """Same batches in the same order with the same decisions and losses, bit-identical weights, equal metrics."""
    assert sorted(seen_a) == sorted(seen_b)
    assert len(seen_a) == len(set((r, s) for r, s, _, _ in seen_a))  # no step run twice
    for kind in ("dynds", "baseline"):
        if a.models.get(kind) is None:
            continue
        sa, sb = a.models[kind].state_dict(), b.models[kind].state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), kind
    for kind in ("dynds", "baseline", "equal_time"):
        ra, rb = getattr(a, kind), getattr(b, kind)
        assert (ra is None) == (rb is None), kind
        if ra is None:
            continue
        fields = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "steps_full", "steps_reduced")
        assert [[getattr(e, f) for f in fields] for e in ra.epochs] == [[getattr(e, f) for f in fields] for e in rb.epochs]
        assert (ra.steps, ra.steps_full, ra.steps_reduced, ra.final_val_acc) == (rb.steps, rb.steps_full, rb.steps_reduced, rb.final_val_acc)
        assert not rb.cancelled
    assert a.acc_delta == b.acc_delta and a.equal_time_gap == b.equal_time_gap


def _uninterrupted(spec):
    seen = Steps()
    return train(spec, seen, keep_baseline_model=True), seen.seen


def test_default_stochastic_schedule_resumes_bit_for_bit(tmp_path, monkeypatch):
    _fixed_lockstep_ratio(monkeypatch)
    spec = tiny_spec(dynds={"schedule": {"kind": "stochastic"}}, equal_time_baseline=False)
    assert spec.dynds.schedule == type(spec.dynds.schedule)()  # the default schedule
    whole, seen = _uninterrupted(spec)
    resumed, seen_r = _run_interrupted(spec, ("dynds", 5), tmp_path)  # mid-epoch (4 steps per epoch)
    _assert_same_job(whole, seen, resumed, seen_r)
    (gap,) = resumed.interruptions
    assert gap.phase == "lockstep" and gap.steps["dynds"] == 6 and gap.lost_s >= 0
    assert resumed.time_saving is not None  # the pairs span both processes' steps


def test_lockstep_with_equal_time_resumes_from_either_part(tmp_path, monkeypatch):
    _fixed_lockstep_ratio(monkeypatch)
    spec = tiny_spec(dynds={"schedule": {"kind": "stochastic", "p": 0.5}}, equal_time_baseline=True)
    whole, seen = _uninterrupted(spec)
    assert whole.equal_time is not None and whole.equal_time.steps == 6  # 8 steps x 0.75
    for stop_at, phase in ((("baseline", 2), "lockstep"), (("equal_time", 4), "equal_time")):
        d = tmp_path / phase
        resumed, seen_r = _run_interrupted(spec, stop_at, d)
        _assert_same_job(whole, seen, resumed, seen_r)
        assert [i.phase for i in resumed.interruptions] == [phase]


def test_a_crash_resumes_from_the_last_periodic_checkpoint(tmp_path, monkeypatch, caplog):
    """No stop: checkpoints on the cadence only (here every round), the newest one corrupt, the one before
    used; the steps after it run again and the result is the same."""
    _fixed_lockstep_ratio(monkeypatch)
    spec = tiny_spec(dynds={"schedule": {"kind": "stochastic", "p": 0.5}}, equal_time_baseline=True, train={"checkpoint_every_s": 1e-9})
    whole, _ = _uninterrupted(spec)
    train(spec, checkpoint_dir=tmp_path)  # ran to the end; its checkpoints stay (the caller deletes them)
    older, newest = list_checkpoints(tmp_path)[1], list_checkpoints(tmp_path)[0]
    assert len(list_checkpoints(tmp_path)) == 2
    newest.write_bytes(newest.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING):
        resumed = train(spec, resume_from=tmp_path, keep_baseline_model=True)
    assert newest.name in caplog.text
    assert resumed.interruptions[0].checkpoint == str(older)
    _assert_same_job(whole, [], resumed, [])


def test_adaptive_schedule_resumes_bit_for_bit_with_a_deterministic_clock(tmp_path, monkeypatch):
    """The adaptive schedule decides from measured step times, so two jobs (interrupted or not) on the real
    clock decide differently as soon as their step times differ; that is not reproducible, by design. What
    is: given the same step times, the resumed job decides exactly as the uninterrupted one. A fake clock
    (each step 1/128 s) gives both the same times."""
    _fixed_lockstep_ratio(monkeypatch)

    def run(fn):
        ticks = iter(range(10**6))
        monkeypatch.setattr(loop, "step_clock", lambda device: next(ticks) / 128)  # exact in binary: every dt is equal
        return fn()

    spec = tiny_spec(
        dynds={"schedule": {"kind": "adaptive", "p_min": 0.0, "p_max": 1.0, "window": 5}},
        train={"epochs": 6, "batch_size": 8},
        equal_time_baseline=False,
    )
    probs: list[tuple[int, float]] = []  # (step, reduction probability) of every decision
    decide = schedules.Schedule.decide

    def recorded(self, step, epoch=0):
        if self.adaptive is not None:
            probs.append((step, self.current_p()))
        return decide(self, step, epoch)

    monkeypatch.setattr(schedules.Schedule, "decide", recorded)
    whole, seen = run(lambda: _uninterrupted(spec))
    whole_probs = probs[:]
    assert len(set(p for _, p in whole_probs)) > 2  # the signals moved it, before and after the stop
    probs.clear()
    first = Steps(("dynds", 30))
    stopped = run(lambda: train(spec, first, checkpoint_dir=tmp_path, keep_baseline_model=True))
    assert stopped.cancelled
    rest = Steps()
    resumed = run(lambda: train(spec, rest, resume_from=tmp_path, keep_baseline_model=True))
    _assert_same_job(whole, seen, resumed, first.seen + rest.seen)
    assert probs == whole_probs


def test_separate_batchnorm_resumes_bit_for_bit(tmp_path, monkeypatch):
    _fixed_lockstep_ratio(monkeypatch)
    spec = tiny_spec(dynds={"schedule": {"kind": "stochastic", "p": 0.5}, "bn": "separate"}, equal_time_baseline=False)
    whole, seen = _uninterrupted(spec)
    assert any(k.endswith("reduced_running_mean") for k in whole.model.state_dict())
    resumed, seen_r = _run_interrupted(spec, ("dynds", 3), tmp_path)
    _assert_same_job(whole, seen, resumed, seen_r)


def test_a_checkpoint_of_another_spec_stops_train_before_training(tmp_path):
    train(tiny_spec(equal_time_baseline=False), Steps(("dynds", 1)), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="belongs to spec"):
        train(tiny_spec(train={"lr": 0.01}, equal_time_baseline=False), resume_from=tmp_path)


def test_global_rngs_are_restored_for_a_model_that_draws_from_them(tmp_path):
    """Dropout draws from torch's global RNG at every step: without the RNGs restored (after the runs are
    rebuilt, which reseeds them) the resumed run drops other units."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    )  # fmt: skip
    spec = tiny_spec(baseline=False, equal_time_baseline=False, dynds={"schedule": {"kind": "stochastic", "p": 0.5}})
    seen = Steps()
    whole = train(spec, seen, model=model)
    first = Steps(("dynds", 4))
    assert train(spec, first, model=model, checkpoint_dir=tmp_path).cancelled
    rest = Steps()
    resumed = train(spec, rest, model=model, resume_from=tmp_path)
    _assert_same_job(whole, seen.seen, resumed, first.seen + rest.seen)
    assert [i.phase for i in resumed.interruptions] == ["dynds"]


def test_tally_round_trip_moves_saved_steps_onto_the_new_clock():
    """Lockstep pairs steps by when they ran: after a resumption the saved steps' start times are shifted by
    one amount for every run, so they stay in order with each other and before the new process's steps."""
    tally = loop._Tally()
    for i, kind in enumerate(("full", "reduced", "full")):
        tally.add(kind, 0.5, at=100.0 + i)
    tally.epoch_loss, tally.epoch_seen = 3.5, 48
    back = loop._Tally()
    back.load_state_dict(tally.state_dict(), clock_shift=-90.0)
    assert list(back.step_at) == [10.0, 11.0, 12.0]
    assert list(back.step_times) == list(tally.step_times) and list(back.step_reduced) == [0, 1, 0]
    tally.add("reduced", 0.25, at=104.0, size=(24, 24))  # a relative's size: a shape code past any int8
    again = loop._Tally()
    again.load_state_dict(tally.state_dict())
    assert list(again.step_reduced) == [0, 1, 0, timing.step_shape("reduced", (24, 24))]
    assert (back.train_time, back.steps, back.epoch_loss, back.epoch_seen) == (1.5, {"full": 2, "reduced": 1}, 3.5, 48)


def test_a_job_interrupted_twice_lists_both_resumptions(tmp_path, monkeypatch):
    _fixed_lockstep_ratio(monkeypatch)
    spec = tiny_spec(dynds={"schedule": {"kind": "stochastic", "p": 0.5}}, equal_time_baseline=False)
    whole, seen = _uninterrupted(spec)
    a, b, c = Steps(("dynds", 2)), Steps(("dynds", 5)), Steps()
    assert train(spec, a, checkpoint_dir=tmp_path).cancelled
    assert train(spec, b, resume_from=tmp_path).cancelled  # goes on checkpointing into the same directory
    resumed = train(spec, c, resume_from=tmp_path, keep_baseline_model=True)
    _assert_same_job(whole, seen, resumed, a.seen + b.seen + c.seen)
    assert [i.steps["dynds"] for i in resumed.interruptions] == [3, 6]


def test_callbacks_hear_of_each_checkpoint_before_it_is_written(tmp_path):
    """A callback that stores the steps it saw (the service's metrics sink) is told before each checkpoint file
    exists, with every step that checkpoint covers already reported: what a resumption keeps is stored."""

    class Store(Callback):
        def __init__(self):
            self.steps, self.calls = 0, []

        def on_step(self, m):
            self.steps += 1

        def on_checkpoint(self):
            newest = list_checkpoints(tmp_path)
            self.calls.append((self.steps, newest[0].name if newest else None))

    store = Store()
    spec = tiny_spec(equal_time_baseline=False, train={"checkpoint_every_s": 1e-9})
    train(spec, store, checkpoint_dir=tmp_path)
    assert len(store.calls) >= 4
    for i, (steps, newest) in enumerate(store.calls):
        assert newest == (f"ckpt-{i - 1:06d}.dynds" if i else None), "told before its own file is written"
        header = read_checkpoint(tmp_path / f"ckpt-{i:06d}.dynds").header if i >= len(store.calls) - 2 else None
        if header is not None:  # the two kept: the steps they cover had all been reported
            assert sum(header["steps"].values()) == steps


# A process that writes checkpoints of ~8 MB, printing each one written; with a cut ("data": half the bytes written,
# "rename": all written and fsynced, not yet renamed) the third save stops there and says so, to be SIGKILLed.
_WRITER = """
import builtins, os, sys, time, torch
from dynds_core.training import checkpoint
cut = sys.argv[2]
saver = checkpoint.Checkpointer(sys.argv[1], "abc")

class HalfWriter:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *a): self.f.close()
    def write(self, data):
        self.f.write(data[: len(data) // 2]); self.f.flush()
        print("cut", flush=True); time.sleep(60)
    def flush(self): self.f.flush()
    def fileno(self): return self.f.fileno()

def replace_later(src, dst):
    print("cut", flush=True); time.sleep(60)

for n in range(1_000_000):
    if n == 2 and cut == "data":
        checkpoint.open = lambda path, mode: HalfWriter(builtins.open(path, mode))
    if n == 2 and cut == "rename":
        checkpoint.os.replace = replace_later
    saver.save({"i": saver.index, "w": torch.full((2_000_000,), float(saver.index))})
    print(saver.index - 1, flush=True)
"""


@pytest.mark.parametrize("cut", ["data", "rename", "random"])
def test_sigkill_while_writing_leaves_the_previous_checkpoint_valid(tmp_path, cut):
    """A writer SIGKILLed with half a checkpoint's bytes written, with all of them written but not renamed, or at
    random moments: the newest loadable checkpoint is whole and the last one written, and the next writer
    clears the cut-off temporary file."""
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    for _ in range(3 if cut == "random" else 1):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), cut], stdout=subprocess.PIPE, text=True)
        lines = [writer.stdout.readline().strip()]  # one written
        if cut == "random":
            time.sleep(rng.uniform(0.05, 0.4))
        else:
            while lines[-1] != "cut":
                lines.append(writer.stdout.readline().strip())
            assert list(tmp_path.glob(".ckpt-*.tmp")), "killed with its temporary file there"
        writer.send_signal(signal.SIGKILL)
        lines += writer.stdout.read().split()
        writer.wait()
        written = [int(x) for x in lines if x != "cut"]
        ckpt = load_checkpoint(tmp_path, "abc")
        i = ckpt.payload["i"]
        # the last reported, or (a random kill between a rename and its print) the one after it
        assert max(written) <= i <= max(written) + 1 and torch.equal(ckpt.payload["w"], torch.full((2_000_000,), float(i)))
    Checkpointer(tmp_path, "abc")
    assert not list(tmp_path.glob(".*.tmp")), "the cut-off write's temporary file is cleared by the next writer"
