#!/usr/bin/env bash
# Scheduled retraining, as .github/workflows/retrain.yml runs it (and as you can run it
# yourself, or a test does against a local DVC remote and a local mlflow server):
#   1. pull the versioned images from the DVC remote,
#   2. kedro run --pipeline=train --env=ci against the team's MLflow server,
#   3. publish the metrics (to $GITHUB_STEP_SUMMARY on GitHub, else to stdout).
# It exits non-zero when any step fails, including a diverged training run or a
# non-finite FID, so the scheduled job goes red.
#
# Environment:
#   MLFLOW_TRACKING_URI  required: the tracking server (e.g. https://mlflow.studio.example)
#   DVC_REMOTE_URL       optional: the DVC remote to pull from (else .dvc/config's default)
#   KEDRO_PARAMS         optional: extra parameters, e.g. "training.max_steps=20000"
#   PYTHON               optional: the interpreter with Atelier installed (default: python)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export KEDRO_DISABLE_TELEMETRY=true

: "${MLFLOW_TRACKING_URI:?Set MLFLOW_TRACKING_URI to the MLflow server of the team}"

if [ -n "${DVC_REMOTE_URL:-}" ]; then
    "$PYTHON" -m dvc remote add --local --force --default retrain "$DVC_REMOTE_URL"
fi
echo "::group::dvc pull"
"$PYTHON" -m dvc pull data/01_raw/images.dvc
echo "::endgroup::"

run_args=(run --pipeline=train --env=ci)
if [ -n "${KEDRO_PARAMS:-}" ]; then
    run_args+=(--params "$KEDRO_PARAMS")
fi
# Reports from an earlier run in this checkout must not pass for this run's.
rm -f data/08_reporting/metrics.json data/08_reporting/registration.json
status=0
"$PYTHON" -m kedro "${run_args[@]}" || status=$?

summary=${GITHUB_STEP_SUMMARY:-/dev/stdout}
"$PYTHON" -m atelier.reporting summary data/08_reporting/metrics.json \
    --registration data/08_reporting/registration.json --exit-status "$status" >> "$summary"
if [ "$status" -ne 0 ]; then
    echo "Retraining failed (kedro exited $status); see the log above." >&2
    exit "$status"
fi
"$PYTHON" -m atelier.reporting check data/08_reporting/metrics.json
