"""Turn a run's reports into a job summary, and fail loudly on a broken result.

Command line (used by ``scripts/retrain.sh``)::

    python -m atelier.reporting summary data/08_reporting/metrics.json \
        [--registration data/08_reporting/registration.json] [--exit-status N]
    python -m atelier.reporting check data/08_reporting/metrics.json

``summary`` prints markdown (GitHub renders it in the job summary); ``check`` exits 1
when the FID is missing or not finite.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from atelier.core.metrics import SCORE_NAMES
from atelier.tracking.promotion import verdict

SUMMARY_METRICS = (*SCORE_NAMES, "num_samples", "dims")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def render_summary(metrics: dict | None, registration: dict | None, exit_status: int = 0) -> str:
    """Markdown for a retraining job: outcome, metrics table, registry decision."""
    lines = ["## Atelier retraining", ""]
    if exit_status:
        lines += [f"**Failed**: `kedro run` exited with status {exit_status} (training may have "
                  "diverged; see the job log).", ""]
    if metrics is None:
        lines.append("No metrics.json was written.")
        return "\n".join(lines) + "\n"
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [f"| {key} | {metrics[key]} |" for key in SUMMARY_METRICS if key in metrics]
    if metrics.get("inception_weights_warning"):
        lines += ["", f"> **WARNING:** {metrics['inception_weights_warning']}"]
    if registration:
        lines += ["", f"Registered `{registration.get('model_name')}` version "
                      f"{registration.get('version')}: **{verdict(bool(registration.get('promote')))}**"
                      f" — {registration.get('reason')}"]
    return "\n".join(lines) + "\n"


def check_metrics(metrics: dict | None) -> str | None:
    """Return what is wrong with ``metrics`` (missing or non-finite FID), or ``None``."""
    if metrics is None:
        return "no metrics.json: evaluation did not run"
    fid = metrics.get("fid")
    if not isinstance(fid, (int, float)) or not math.isfinite(fid):
        return f"FID is {fid!r}, not a finite number: the model or its evaluation is broken"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atelier.reporting", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="print a markdown summary of a run")
    summary.add_argument("metrics", type=Path)
    summary.add_argument("--registration", type=Path)
    summary.add_argument("--exit-status", type=int, default=0)
    check = commands.add_parser("check", help="exit 1 unless the FID is a finite number")
    check.add_argument("metrics", type=Path)
    args = parser.parse_args(argv)

    metrics = _read_json(args.metrics)
    if args.command == "summary":
        registration = _read_json(args.registration) if args.registration else None
        sys.stdout.write(render_summary(metrics, registration, args.exit_status))
        return 0
    problem = check_metrics(metrics)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"FID {metrics['fid']:.4f}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
