"""From a threshold curve to a verdict: raise, lower or hold, with the guard that decided it.

Lowering is a fixed-sequence test: starting at the threshold in force and stepping down the
grid, each step must keep the upper bound under the target, and the scan stops at the first
step that does not. Testing in a fixed order and stopping at the first failure keeps the
overall error guarantee at the nominal level without a multiple-comparison penalty (picking the
lowest passing threshold anywhere on the grid would not). Raising needs no such care: it only
ever automates less.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitl.analysis.evidence import ThresholdCurve
from hitl.analysis.models import Action, ReviewParams


@dataclass(frozen=True)
class Verdict:
    action: Action
    index: int  # grid position of the recommended threshold
    reason: str
    guard: str | None = None
    stop: bool = False  # a raise to where no threshold passes: nothing may be automated


def _pct(value: float) -> str:
    return f"{value:.1%}" if value >= 0.001 else f"{value:.2%}"


def _lowest_passing_below(ok: np.ndarray, start: int) -> int:
    index = start
    while index > 0 and ok[index - 1]:
        index -= 1
    return index


def _first_passing_above(ok: np.ndarray, start: int) -> int:
    return next((j for j in range(start + 1, ok.size) if ok[j]), ok.size - 1)


def _shown_safe(curve: ThresholdCurve, ok: np.ndarray) -> np.ndarray:
    """Where a raise may stop: the bound passes over decisions the window has. A threshold nothing
    reached yet (the bound of an empty set is 0) shows nothing about the decisions that will reach
    it, so raising there is a stop, not a safe threshold."""
    return ok & (curve.automation_rate > 0)


def _raise_note(curve: ThresholdCurve, ok: np.ndarray, index: int, target: float) -> str:
    if ok[index]:
        return f"{curve.grid[index]:.3f} is the lowest threshold above it whose upper bound stays under"
    return (
        f"no threshold up to {curve.grid[index]:.3f} can be shown to stay under {_pct(target)} yet, so "
        "automation stops (nothing is automated, whatever the confidence) until reviews show where it is safe"
    )


def _start_of_sequence(curve: ThresholdCurve, i0: int, min_samples: int) -> int | None:
    """Where the descending test sequence starts: the threshold in force, or, when too few
    decisions at or above it were reviewed for the test to mean anything, the first threshold
    below it where enough were. The start depends on review counts only, never on outcomes, so
    the fixed-sequence guarantee holds."""
    for index in range(i0, -1, -1):
        if curve.n_reviewed[index] >= min_samples:
            return index
    return None


def decide(curve: ThresholdCurve, current: float, target: float, params: ReviewParams) -> Verdict:
    """The verdict for one group (checkpoint, class or client) whose threshold in force is `current`."""
    grid, upper, lower = curve.grid, curve.upper, curve.lower
    ok = np.nan_to_num(upper, nan=1.0) <= target
    i0 = curve.index(current)
    level = f"{params.confidence:.0%}"
    if curve.n_total == 0 or curve.n_reviewed[0] == 0:
        return Verdict(
            Action.HOLD, i0, "no reviewed decisions in the window: nothing to learn from", "min_samples"
        )
    shown = _shown_safe(curve, ok)
    if lower[i0] > target:
        raise_to = _first_passing_above(shown, i0)
        return Verdict(
            Action.RAISE,
            raise_to,
            f"the audited AUTO error at or above {current:.3f} is at least {_pct(lower[i0])} "
            f"({level} lower bound) > target {_pct(target)}: raise at once; "
            + _raise_note(curve, shown, raise_to, target),
            "raise_now",
            stop=not shown[raise_to],
        )
    start = _start_of_sequence(curve, i0, params.min_samples)
    if start is None:
        return Verdict(
            Action.HOLD,
            i0,
            f"only {curve.n_reviewed[0]} reviewed decisions (minimum {params.min_samples}): "
            "not enough evidence either way",
            "min_samples",
        )
    if not ok[start]:
        if start == i0:
            raise_to = _first_passing_above(shown, i0)
            return Verdict(
                Action.RAISE,
                raise_to,
                f"at {current:.3f} the {level} upper bound on the AUTO error is {_pct(upper[i0])} > target "
                f"{_pct(target)}: " + _raise_note(curve, shown, raise_to, target),
                "unproven",
                stop=not shown[raise_to],
            )
        return Verdict(
            Action.HOLD,
            i0,
            f"only {curve.n_reviewed[i0]} reviewed decisions at or above {current:.3f}, and at "
            f"{grid[start]:.3f} the {level} upper bound is {_pct(upper[start])} > target {_pct(target)}",
            "min_samples",
        )
    lowest = _lowest_passing_below(ok, start)
    if lowest == i0:
        below = grid[i0 - 1] if i0 > 0 else None
        detail = f" (at {below:.3f} it would be {_pct(upper[i0 - 1])})" if below is not None else ""
        return Verdict(
            Action.HOLD,
            i0,
            f"the {level} upper bound at {current:.3f} is {_pct(upper[i0])} <= target {_pct(target)}, "
            f"and no lower threshold keeps it there{detail}",
        )
    band = curve.n_reviewed - curve.n_reviewed[i0]  # reviews in [grid[i], current)
    candidates = [i for i in range(lowest, i0) if band[i] >= params.min_samples]
    if not candidates:
        return Verdict(
            Action.HOLD,
            i0,
            f"only {band[lowest]} reviewed decisions between {grid[lowest]:.3f} and {current:.3f} "
            f"(minimum {params.min_samples}): hold until the band has more evidence",
            "min_samples",
        )
    chosen, guard, note = candidates[0], None, ""
    floor_index = int(np.searchsorted(grid, current - params.max_step - 1e-9, side="left"))
    if chosen < floor_index:
        chosen, guard = floor_index, "max_step"
        note = f"; limited to a {params.max_step:g} step (the evidence allows {grid[candidates[0]]:.3f})"
    if current - grid[chosen] < params.hysteresis - 1e-12:
        return Verdict(
            Action.HOLD,
            i0,
            f"lowering to {grid[chosen]:.3f} gains less than the hysteresis margin {params.hysteresis:g}",
            "hysteresis",
        )
    return Verdict(
        Action.LOWER,
        chosen,
        f"the {level} upper bound on the AUTO error at {grid[chosen]:.3f} is {_pct(upper[chosen])} "
        f"<= target {_pct(target)} ({curve.n_full[chosen]} fully reviewed + {curve.n_audited[chosen]} "
        f"audited decisions): automation {curve.automation_rate[i0]:.0%} -> "
        f"{curve.automation_rate[chosen]:.0%}{note}",
        guard,
    )
