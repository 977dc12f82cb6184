"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/<env>/mlflow.yml is read by kedro-mlflow's hook (registered through its entry point).
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
}
