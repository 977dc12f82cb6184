"""Pure torch library: no Kedro, MLflow or DVC imports, so it runs on a torch-only GPU box."""
