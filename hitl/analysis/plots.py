"""The threshold review's two pictures, as PNG bytes for the self-contained report.

Reliability: does a confidence of 0.9 mean 90 % right, over all decisions (reviews weighted by
1/propensity, as the bounds are)? Risk-coverage: what each threshold would automate and at what
estimated AUTO error, so an analyst sees why the verdict landed where it did.

Figures are built with matplotlib's object API (`Figure`, rendered by Agg when saved), never
pyplot: no backend switch, no figure registry, nothing left behind in a long-lived worker.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from hitl.analysis.calibration import reviewed_bins, weighted_ece
from hitl.analysis.evidence import ThresholdCurve
from hitl.analysis.models import Recommendation

SIZE = (6.0, 4.0)  # inches; with DPI, 600 x 400 pixels
DPI = 100
_STYLE = {"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7}


def plain(text: str, limit: int = 90) -> str:
    """Log text (a class or client name) as literal figure text: `$` would start mathtext, which
    misrenders or raises on a name like "cost $5"; long names are cut to fit the title."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.replace("$", r"\$")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # no Software metadata: the same figure gives the same bytes
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    return buffer.getvalue()


def reliability_png(log: pd.DataFrame, title: str) -> bytes | None:
    """Accuracy per confidence bin against the diagonal, estimated decisions per bin below;
    None when nothing in `log` was reviewed (no picture to draw)."""
    bins = reviewed_bins(log)
    if int(bins.count.sum()) == 0:
        return None
    ece = weighted_ece(bins)
    centres = (bins.lower + bins.upper) / 2
    width = float(bins.upper[0] - bins.lower[0]) * 0.9
    filled = bins.count > 0
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=SIZE, dpi=DPI)  # fixed margins: constrained layout costs 0.1 s a plot
        fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.11, hspace=0.08)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        top.bar(centres, np.nan_to_num(bins.accuracy), width=width, color="#3b7dd8", label="accuracy")
        top.plot(
            bins.confidence[filled], bins.accuracy[filled], "o", color="#d8573b", label="mean confidence"
        )
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy (weighted)")
        top.set_title(plain(title) + (f" (ECE {ece:.3f})" if ece is not None else ""))
        top.legend(loc="upper left")
        bottom.bar(centres, bins.weight, width=width, color="#888888")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("confidence")
        bottom.set_ylabel("est. decisions")
        return _png(fig)


def _y_limit(curve: ThresholdCurve, target: float, marked: list[int]) -> float:
    """High enough for the target and both markers, low enough that the target line is readable
    (the bound explodes where almost nothing would be automated)."""
    tallest = max(float(np.nan_to_num(curve.upper[i])) for i in marked)
    return min(1.0, max(3 * target, 1.25 * tallest, 0.01))


def risk_coverage_png(curve: ThresholdCurve, recommendation: Recommendation, title: str) -> bytes | None:
    """Estimated AUTO error (with its bounds) against automation rate, the target, and the current
    and recommended thresholds marked on the upper bound (the quantity the verdict tests);
    None when the group has no decisions."""
    shown = curve.n_auto > 0
    if curve.n_total == 0 or not shown.any():
        return None
    x = curve.automation_rate[shown]
    i0, i1 = curve.index(recommendation.current), curve.index(recommendation.recommended)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=SIZE, dpi=DPI)
        fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.12)
        ax = fig.subplots()
        ax.fill_between(x, curve.lower[shown], curve.upper[shown], color="#3b7dd8", alpha=0.15,
                        linewidth=0, label="error bounds")  # fmt: skip
        ax.plot(x, curve.upper[shown], color="#3b7dd8", linewidth=1, linestyle=":", label="upper bound")
        ax.plot(x, curve.estimate[shown], color="#3b7dd8", linewidth=1.5, label="estimated AUTO error")
        ax.axhline(recommendation.target_error, color="#d8573b", linestyle="--",
                   label=f"target {recommendation.target_error:.1%}")  # fmt: skip
        ax.plot(curve.automation_rate[i0], curve.upper[i0], "o", color="#333333", markersize=11,
                fillstyle="none", clip_on=False, label=f"current {recommendation.current:.3f}")  # fmt: skip
        ax.plot(curve.automation_rate[i1], curve.upper[i1], "D", color="#2a9d55", markersize=6,
                clip_on=False, label=f"recommended {recommendation.recommended:.3f}")  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, _y_limit(curve, recommendation.target_error, [i0, i1]))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        ax.set_xlabel("automation rate (decisions at or above the threshold)")
        ax.set_ylabel("AUTO error")
        ax.set_title(f"{plain(title)} ({recommendation.action.value})")
        ax.legend(loc="upper right")  # "best" searches every position: slow on a long curve
        return _png(fig)
