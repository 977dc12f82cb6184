"""The retraining job's summary and check (src/atelier/reporting.py, run by scripts/retrain.sh):
the markdown a GitHub job summary shows for a promoted and a kept candidate, a failed run,
a run with no metrics, and the check that fails the job on a missing or non-finite FID."""

from __future__ import annotations

import json

import pytest

from atelier.reporting import check_metrics, main, render_summary

METRICS = {"fid": 10.0, "inception_score": 1.5, "inception_score_std": 0.25, "kid": 0.125,
           "kid_std": 0.0625, "num_samples": 200, "dims": 2048,
           # Not in the table: the champion's side-by-side entry, the weights' hash.
           "champion": {"version": "2", "fid": 12.0}, "inception_weights_sha256": "ab12" * 16}
TABLE = """\
## Atelier retraining

| metric | value |
| --- | --- |
| fid | 10.0 |
| inception_score | 1.5 |
| inception_score_std | 0.25 |
| kid | 0.125 |
| kid_std | 0.0625 |
| num_samples | 200 |
| dims | 2048 |
"""
PROMOTED = {"model_name": "atelier-generator", "version": 3, "promote": True,
            "reason": "FID 10.0000 beats the champion's 12.0000 by 2.0000 (>= min_fid_improvement "
                      "1.0), scored side by side with champion version 2"}
KEPT = {"model_name": "atelier-generator", "version": 4, "promote": False,
        "reason": "FID 11.5000 does not beat the champion's 12.0000 by min_fid_improvement 1.0 "
                  "(needed <= 11.0000), scored side by side with champion version 2"}
STANDIN = "STAND-IN Inception weights (sha256 ab12ab12ab12ab12...): FID, IS and KID are NOT comparable."


def test_a_promoted_candidate():
    assert render_summary(METRICS, PROMOTED) == TABLE + (
        "\nRegistered `atelier-generator` version 3: **promoted to champion** — FID 10.0000 beats the "
        "champion's 12.0000 by 2.0000 (>= min_fid_improvement 1.0), scored side by side with "
        "champion version 2\n")


def test_a_kept_candidate():
    table = TABLE.replace("| fid | 10.0 |", "| fid | 11.5 |")
    assert render_summary({**METRICS, "fid": 11.5}, KEPT) == table + (
        "\nRegistered `atelier-generator` version 4: **challenger only** — FID 11.5000 does not beat "
        "the champion's 12.0000 by min_fid_improvement 1.0 (needed <= 11.0000), scored side by "
        "side with champion version 2\n")


def test_stand_in_scores_are_flagged_before_the_decision():
    summary = render_summary({**METRICS, "inception_weights_warning": STANDIN}, PROMOTED)
    assert summary == TABLE + f"\n> **WARNING:** {STANDIN}\n" + (
        "\nRegistered `atelier-generator` version 3: **promoted to champion** — " + PROMOTED["reason"] + "\n")


def test_without_a_registration_only_the_scores():
    assert render_summary(METRICS, None) == TABLE


def test_a_failed_run_says_so_first():
    assert render_summary(None, None, exit_status=1) == (
        "## Atelier retraining\n\n**Failed**: `kedro run` exited with status 1 (training may "
        "have diverged; see the job log).\n\nNo metrics.json was written.\n")
    # A run that failed after the evaluation (e.g. in registration) still shows its scores.
    assert render_summary(METRICS, None, exit_status=2) == TABLE.replace(
        "## Atelier retraining\n\n", "## Atelier retraining\n\n**Failed**: `kedro run` exited with "
        "status 2 (training may have diverged; see the job log).\n\n")


@pytest.mark.parametrize(("metrics", "problem"), [
    (METRICS, None),
    ({**METRICS, "fid": 0}, None),
    (None, "no metrics.json: evaluation did not run"),
    ({"kid": 0.1}, "FID is None, not a finite number: the model or its evaluation is broken"),
    ({"fid": float("nan")}, "FID is nan, not a finite number: the model or its evaluation is broken"),
    ({"fid": float("inf")}, "FID is inf, not a finite number: the model or its evaluation is broken"),
    ({"fid": "10.0"}, "FID is '10.0', not a finite number: the model or its evaluation is broken"),
])
def test_check_metrics(metrics, problem):
    assert check_metrics(metrics) == problem


def test_the_command_line_as_retrain_sh_calls_it(tmp_path, capsys):
    metrics, registration = tmp_path / "metrics.json", tmp_path / "registration.json"
    metrics.write_text(json.dumps(METRICS))
    registration.write_text(json.dumps(KEPT))
    assert main(["summary", str(metrics), "--registration", str(registration)]) == 0
    assert capsys.readouterr().out == render_summary(METRICS, KEPT)
    assert main(["summary", str(tmp_path / "missing.json"), "--exit-status", "1"]) == 0
    assert capsys.readouterr().out == render_summary(None, None, 1)

    assert main(["check", str(metrics)]) == 0
    assert capsys.readouterr().out == "FID 10.0000: ok\n"
    metrics.write_text('{"fid": NaN}')  # what json.dump writes for a NaN FID
    assert main(["check", str(metrics)]) == 1
    assert capsys.readouterr().err == ("error: FID is nan, not a finite number: the model or its "
                                       "evaluation is broken\n")
    assert main(["check", str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().err == "error: no metrics.json: evaluation did not run\n"
