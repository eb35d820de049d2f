"""Benchmark: review 1,000,000 decisions, next to pandas' plain read of the same CSV.

Target (issue #5): the review takes at most 3x the plain read, peak memory under 2 GB.

    .venv/bin/python bench/threshold_review.py --rows 1000000 --workdir /tmp/review-bench

Each phase runs in its own child process so its peak resident memory (ru_maxrss) is its own:
  read    pandas.read_csv(path) and nothing else (the yardstick);
  review  what `hitl review-thresholds --from-csv` does: validated read, every verdict, drift;
  report  the same plus the self-contained HTML report with its plots.
The decisions come from the simulation scenario (known error curve, imbalanced classes, 5 %
audits) spread over four checkpoints, 12 clients, 8 reviewers and 30 days.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKPOINT_THRESHOLDS = {"triage": 0.8, "escalation": 0.8, "remediation": 0.9, "reply": 0.9}
REASONS = ("wrong_category", "wrong_priority", "client_context", "missing_info", "other")


def generate(rows: int, path: Path, seed: int = 1) -> None:
    from hitl.analysis.simulation import TRIAGE_LIKE

    rng = np.random.default_rng(seed)
    confidence, p_error = TRIAGE_LIKE.draw(rng, rows)
    checkpoint = rng.choice(list(CHECKPOINT_THRESHOLDS), size=rows, p=[0.4, 0.25, 0.15, 0.2])
    threshold = np.vectorize(CHECKPOINT_THRESHOLDS.get)(checkpoint)
    labels = np.array([f"class-{i}" for i in range(8)])
    label = labels[np.minimum(rng.geometric(0.35, rows) - 1, 7)]
    above = confidence >= threshold
    audited = above & (rng.random(rows) < 0.05)
    route = np.where(~above, "human", np.where(audited, "audit", "auto"))
    propensity = np.where(above, 0.05, 1.0)
    wrong = rng.random(rows) < p_error
    reviewed = ~above | audited
    other = labels[(np.searchsorted(labels, label) + 1) % 8]
    final = np.where(reviewed, np.where(wrong, other, label), "")
    reason = np.where(reviewed & wrong, rng.choice(REASONS, rows), "")
    reviewer = np.where(reviewed, rng.choice([f"analyst{i}" for i in range(8)], rows), "")
    start = datetime(2026, 10, 1, tzinfo=UTC)
    seconds = np.sort(rng.integers(0, 30 * 86400, rows))
    stamps = pd.to_datetime(start) + pd.to_timedelta(seconds, unit="s")
    frame = pd.DataFrame(
        {
            "decision_id": np.char.add("d", np.arange(rows).astype(str)),
            "checkpoint": checkpoint,
            "label": label,
            "confidence": np.round(confidence, 4),
            "route": route,
            "propensity": propensity,
            "ai_value": label,
            "final_value": final,
            "reason_code": reason,
            "reviewer": reviewer,
            "decided_at": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "client_id": rng.choice([f"client-{i:02d}" for i in range(12)], rows),
            "threshold": threshold,
        }
    )
    frame.to_csv(path, index=False)


def _peak_rss_mb() -> float:
    """This process's high-water mark (VmHWM): unlike ru_maxrss it is not inherited across exec
    from the parent that generated the data."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _phase(name: str, path: Path, home: Path) -> dict[str, float]:
    imports = time.perf_counter()
    if name != "read":  # the modules load before the clock starts, as pandas has for the read
        os.environ["HITL_HOME"] = str(home)
        from hitl.analysis.models import ReviewParams
        from hitl.analysis.service import run_review
    imports = time.perf_counter() - imports
    started = time.perf_counter()
    if name == "read":
        frame = pd.read_csv(path)
        extra = {"rows": len(frame)}
    else:
        params = ReviewParams(
            until=datetime(2026, 11, 1, tzinfo=UTC), since=datetime(2026, 10, 1, tzinfo=UTC)
        )
        result, _ = run_review(params, csv=path, report=name == "report")
        extra = {"recommendations": len(result.recommendations), "report": result.report_path or ""}
    seconds = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    return {"phase": name, "seconds": round(seconds, 3), "import_seconds": round(imports, 3),
            "peak_rss_mb": round(peak_mb, 1), **extra}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hitl-review-bench"))
    parser.add_argument("--phase", choices=("read", "review", "report"), help=argparse.SUPPRESS)
    parser.add_argument("--phases", default="read,review,report", help="comma-separated subset")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the median is reported")
    args = parser.parse_args()
    path = args.workdir / f"decisions-{args.rows}.csv"
    if args.phase:
        print(json.dumps(_phase(args.phase, path, args.workdir / "home")))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        started = time.perf_counter()
        generate(args.rows, path)
        print(
            f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s"
        )
    results: dict[str, list[dict[str, float]]] = {}
    for phase in args.phases.split(","):
        for _ in range(args.repeat):
            command = [sys.executable, __file__, "--rows", str(args.rows), "--workdir", str(args.workdir)]
            out = subprocess.run(
                [*command, "--phase", phase],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            results.setdefault(phase, []).append(json.loads(out))
    median = {p: float(np.median([r["seconds"] for r in runs])) for p, runs in results.items()}
    peak = {p: max(r["peak_rss_mb"] for r in runs) for p, runs in results.items()}
    summary = {
        "rows": args.rows,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu_count": os.cpu_count(),
        "median_seconds": median,
        "peak_rss_mb": peak,
        **{f"{p}_over_read": round(median[p] / median["read"], 2) for p in median if p != "read"},
        "runs": results,
    }
    print(json.dumps(summary, indent=2))
    (args.workdir / "results.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
