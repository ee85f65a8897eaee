"""bench/pairing.py: its burner is bounded and always killed, and its target check reads the spreads right."""

import importlib.util
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("pairing_bench", ROOT / "bench" / "pairing.py")
pairing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pairing)


def test_burner_children_are_killed_by_stop():
    b = pairing.Burner(2, 60)
    try:
        b.start()
        b.start()  # idempotent: never a second set
        assert len(b.children) == 2 and b.running() == 2
    finally:
        b.stop()
    assert b.running() == 0
    assert all(c.returncode is not None for c in b.children)


def test_burner_ends_by_itself_at_its_deadline():
    b = pairing.Burner(1, 0.5)
    try:
        b.start()
        deadline = time.monotonic() + 10
        while b.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.running() == 0 and b.children[0].returncode == 0
        assert b.expired()
    finally:
        b.stop()


def _rows(savings):
    return [{"time_saving": s, "time_saving_interleaved": s} for s in savings]


def test_target_met_only_when_lockstep_is_tight_and_sequential_spreads(capsys):
    assert pairing.report({"sequential": _rows([0.20, 0.45, 0.33]), "lockstep": _rows([0.33, 0.34, 0.345])}) == 0
    assert "MET" in capsys.readouterr().out
    # lockstep spread 3 pt: not met
    assert pairing.report({"sequential": _rows([0.20, 0.45]), "lockstep": _rows([0.33, 0.36])}) == 1
    # sequential did not spread (the burner missed): the check proves nothing, not met
    assert pairing.report({"sequential": _rows([0.33, 0.35]), "lockstep": _rows([0.33, 0.34])}) == 1
    out = capsys.readouterr().out
    assert "NOT MET" in out and "| lockstep (steps paired in time) | 33.0, 34.0 | 1.0 pt |" in out
    assert pairing.report({"sequential": _rows([0.3]), "lockstep": _rows([0.3])}) == 2


def test_the_clock_s_lockstep_figure_is_shown_but_not_judged(capsys):
    lock = [{**r, "time_saving_total": t} for r, t in zip(_rows([0.33, 0.34]), [0.20, 0.45], strict=True)]
    assert pairing.report({"sequential": _rows([0.20, 0.45]), "lockstep": lock}) == 0
    assert "| lockstep, total times (the clock; not the target's figure) | 20.0, 45.0 | 25.0 pt |" in capsys.readouterr().out
