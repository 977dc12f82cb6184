"""``ExperimentHook``: the MLflow experiment exists before kedro-mlflow looks for it.

kedro-mlflow's ``after_context_created`` hook looks the experiment up by name and creates
it when the lookup finds nothing. Two ``kedro run`` started at once against a new tracking
server (two scheduled retrainings, two people's first runs) can both find nothing; the
second create then fails on the server's unique name (``RESOURCE_ALREADY_EXISTS``) and that
whole run dies before its first node. This hook runs first (``tryfirst``) and makes sure
the experiment exists with :func:`atelier.tracking.ensure_experiment`, which treats a lost
race as success; kedro-mlflow then finds it.

It reads the same ``mlflow`` configuration kedro-mlflow reads (``conf/*/mlflow.yml``, the
experiment name defaulting to the package name, relative locations under the project)
and exports the same credentials, so both talk to the same store. A run opened outside
Kedro (an orchestrator's active MLflow run) is left alone, as kedro-mlflow leaves it.
"""

from __future__ import annotations

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from atelier.tracking import ensure_experiment


class ExperimentHook:
    """Create the run's MLflow experiment race-free before kedro-mlflow's hook needs it."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        if mlflow.active_run() is not None:
            return
        from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig, _validate_uri
        from mlflow.tracking import MlflowClient

        try:
            conf = context.config_loader["mlflow"]
        except (KeyError, MissingConfigException):
            conf = {}
        config = KedroMlflowConfig.model_validate({**conf})
        experiment = config.tracking.experiment
        name = experiment.name if conf.get("tracking", {}).get("experiment", {}).get("name") \
            else (context._package_name or "atelier")
        project = context.project_path
        tracking_uri = _validate_uri(project_path=project,
                                     uri=config.server.mlflow_tracking_uri or "mlruns")
        registry_uri = config.server.mlflow_registry_uri
        config._export_credentials(context)
        artifact_location = experiment.create_experiment_kwargs.artifact_location
        ensure_experiment(
            MlflowClient(tracking_uri=tracking_uri,
                         registry_uri=_validate_uri(project_path=project, uri=registry_uri)
                         if registry_uri else None),
            name,
            artifact_location=_validate_uri(project_path=project, uri=artifact_location)
            if artifact_location else None,
            tags=experiment.create_experiment_kwargs.tags)
