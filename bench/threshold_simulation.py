"""The threshold review's guarantee, simulated: every method and evidence mode side by side.

    .venv/bin/python bench/threshold_simulation.py --periods 500

For each (method, mode): the share of periods whose adopted threshold leaves the true AUTO error
above target (must be <= 5 %), and the automation reached as a share of the oracle's (which knows
the true curve). Methods: "stratified" (the product: Fay-Feuer bound over propensity strata) and
"kish" (one Clopper-Pearson bound at the Kish effective sample size). Modes: "independent" (each
period starts from the initial threshold, one period of evidence) and "sequential" (each review
adopted at once; evidence pooled over the last N periods). The tests assert the product's row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hitl.analysis.models import ReviewParams
from hitl.analysis.simulation import TRIAGE_LIKE, run_simulation


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--periods", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    for method in ("stratified", "kish"):
        for mode, pool in (("independent", 1), ("sequential", 1), ("sequential", 3), ("sequential", 6)):
            started = time.perf_counter()
            result = run_simulation(
                TRIAGE_LIKE,
                args.periods,
                method=method,
                mode=mode,
                pool=pool,
                params=ReviewParams(max_step=1),
            )
            row = {**asdict(result), "pool": pool, "seconds": round(time.perf_counter() - started, 1)}
            rows.append(row)
            print(f"{result.line()} pool={pool}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
