"""Reliability diagrams: the picture that shows whether a confidence of 0.9 means 90 % right."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display here or on workers
import matplotlib.pyplot as plt

from hitl.ml.metrics import ReliabilityBin


def reliability_png(bins: Sequence[ReliabilityBin], title: str, ece: float | None = None) -> bytes:
    """Bars of accuracy per confidence bin against the diagonal, with ticket counts below."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    centres = [(b.lower + b.upper) / 2 for b in bins]
    width = bins[0].upper - bins[0].lower if bins else 1 / 15
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.bar(centres, [b.accuracy or 0 for b in bins], width=width * 0.9, color="#3b7dd8", label="accuracy")
    top.plot(
        [b.mean_confidence for b in bins if b.count],
        [b.accuracy for b in bins if b.count],
        "o",
        color="#d8573b",
        label="mean confidence",
    )
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title + (f" (ECE {ece:.3f})" if ece is not None else ""))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, [b.count for b in bins], width=width * 0.9, color="#888888")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("tickets")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
