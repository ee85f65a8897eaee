"""What should I use? One recommendation per track (a recipe on one hardware key), from its leaderboard cells.

    board = build_leaderboard(rows, min_seeds=3)
    [recommend(t) for t in board["tracks"]]

A setting (DynDS's or a relative's: progressive resizing, Mix&Match, with or without FixRes BatchNorm
recalibration) is recommended only where its verdict holds: ``beats_equal_time``, the 95 % interval of its
gap to the baseline trained for the same time above zero over at least ``min_seeds`` seeds, in a ranked cell
with trusted timing (no noisy or contended job, even when the board was asked to include them). Among those,
the largest mean gap wins (ties: the larger time saving, then the setting key).
Otherwise the answer is the plain one: nothing tested beats training the baseline for less time; or, where no
cell has a conclusive verdict yet, that the evidence is missing and what to run. The evidence (seeds,
intervals, jobs, the track's link) comes with every answer.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from app.leaderboard.keys import method_of

RecommendationKind = Literal["setting", "baseline_for_less_time", "not_enough_evidence"]
# Verdicts that are conclusive about the equal-time comparison (dynds_core.verdict).
CONCLUSIVE = ("beats_equal_time", "loses_to_equal_time", "tie")


def _pt(x: float | None) -> str:
    return "?" if x is None else f"{x:+.1f} pt"


def _interval(ci: list[float] | None) -> str:
    return f" (95 % interval {ci[0]:+.1f} to {ci[1]:+.1f} pt)" if ci else ""


def cell_method(cell: dict[str, Any]) -> str:
    """The method of a cell's setting (``keys.method_of``), from its schedule kind and stored setting."""
    setting = cell.get("setting") or {}
    return method_of({**setting, "schedule": {"kind": cell["schedule_kind"]}})


def evidence(cell: dict[str, Any], track_label: str) -> dict[str, Any]:
    """The figures a recommendation rests on, from one leaderboard cell, and where to see them."""
    return {
        "setting_key": cell["setting_key"],
        "method": cell_method(cell),
        "schedule_kind": cell["schedule_kind"],
        "verdict": cell["verdict"],
        "verdict_sentence": cell["verdict_sentence"],
        "n_seeds": cell["n_seeds"],
        "seeds": cell["seeds"],
        "job_ids": cell["job_ids"],
        "equal_time_gap_mean": cell["equal_time_gap_mean"],
        "equal_time_gap_ci95": cell["equal_time_gap_ci95"],
        "time_saving_mean": cell["time_saving_mean"],
        "time_saving_ci95": cell["time_saving_ci95"],
        "acc_delta_mean": cell["acc_delta_mean"],
        "acc_delta_ci95": cell["acc_delta_ci95"],
        "link": f"#/leaderboard?track={quote(track_label, safe='')}",
    }


def _best_gap(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    with_gap = [c for c in cells if c["equal_time_gap_mean"] is not None]
    if not with_gap:
        return None
    return min(with_gap, key=lambda c: (-c["equal_time_gap_mean"], -(c["time_saving_mean"] or 0.0), c["setting_key"]))


def recommend(track: dict[str, Any]) -> dict[str, Any]:
    """The recommendation for one leaderboard track (``build_leaderboard``'s ``tracks[i]``); pure.

    ``kind``: ``setting`` (``evidence`` is the recommended cell), ``baseline_for_less_time`` (conclusive cells
    exist and none beats the equal-time baseline; ``evidence`` is the one that came closest), or
    ``not_enough_evidence`` (no cell is conclusive yet; ``evidence`` is the best point estimate, if any)."""
    cells = track["entries"]
    label = track["track"]
    # Trusted cells only: ranked (enough seeds) and no noisy or contended job among their figures, even where
    # include_noisy lets such jobs into the board: a recommendation never rests on a time saving that is not this hardware's.
    trusted = [c for c in cells if c["ranked"] and not c["noisy_included"]]
    holds = [c for c in trusted if c["verdict"] == "beats_equal_time"]
    conclusive = [c for c in trusted if c["verdict"] in CONCLUSIVE]
    counts = {
        v: sum(1 for c in cells if c["verdict"] == v) for v in ("beats_equal_time", "loses_to_equal_time", "tie", "needs_seeds", "no_equal_time")
    }
    kind: RecommendationKind
    if holds:
        kind, cell = "setting", _best_gap(holds)
        assert cell is not None  # a cell that beats the equal-time baseline has a gap
        headline = (
            f"Use {cell_method(cell)} ({cell['setting_key']}): "
            f"{_pt(cell['equal_time_gap_mean'])} over the baseline trained for the same time{_interval(cell['equal_time_gap_ci95'])}, "
            f"{(cell['time_saving_mean'] or 0) * 100:.0f} % less time than the full baseline, over {cell['n_seeds']} seeds."
        )
    elif conclusive:
        kind, cell = "baseline_for_less_time", _best_gap(conclusive)
        assert cell is not None
        headline = (
            f"Nothing tested beats training the baseline for less time: of {len(conclusive)} conclusive setting"
            f"{'s' if len(conclusive) != 1 else ''}, the closest ({cell['setting_key']}) is {_pt(cell['equal_time_gap_mean'])} "
            f"against it{_interval(cell['equal_time_gap_ci95'])} over {cell['n_seeds']} seeds. Train the baseline for fewer epochs instead."
        )
    else:
        kind, cell = "not_enough_evidence", _best_gap(cells)
        headline = (
            "No setting has a conclusive verdict yet: run each with equal_time_baseline: true over at least "
            f"{track.get('min_seeds', 3)} seeds (untimed or noisy jobs do not count)."
        )
        if cell is not None:
            headline += f" Best point estimate so far: {cell['setting_key']}, {_pt(cell['equal_time_gap_mean'])} against the equal-time baseline."
    return {
        "track": label,
        "track_key": track["track_key"],
        "recipe_label": track.get("recipe_label", label),
        "hardware_key": track.get("hardware_key"),
        "kind": kind,
        "headline": headline,
        "evidence": evidence(cell, label) if cell is not None else None,
        "n_settings": len(cells),
        "n_conclusive": len(conclusive),
        "verdicts": counts,
    }


def build_recommendations(board: dict[str, Any]) -> dict[str, Any]:
    """One recommendation per track of a leaderboard (``build_leaderboard``'s output), in its track order."""
    min_seeds = board.get("min_seeds", 3)
    return {
        "min_seeds": min_seeds,
        "include_noisy": board.get("include_noisy", False),
        "recommendations": [recommend({**t, "min_seeds": min_seeds}) for t in board["tracks"]],
    }
