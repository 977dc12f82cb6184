"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from atelier.hooks import ExperimentHook, LineageHook, PreflightHook, RunLockHook

# kedro-mlflow's hook comes in through its entry point. Ours: the MLflow experiment created
# race-free before kedro-mlflow looks it up (tryfirst), one run at a time per project
# folder and preflight checks (both before any node runs and before kedro-mlflow opens the
# MLflow run), and lineage tags.
HOOKS = (ExperimentHook(), RunLockHook(), PreflightHook(), LineageHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # Environments (conf/ci, conf/local) override single keys, not whole sections.
    "merge_strategy": {"parameters": "soft"},
    # Kedro allows ${oc.env:...} only in credentials; conf/*/mlflow.yml uses it so that
    # MLFLOW_TRACKING_URI overrides the embedded SQLite store.
    "custom_resolvers": {"oc.env": oc.env},
}
