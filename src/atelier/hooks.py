"""Project hooks: lineage tags on every MLflow run.

kedro-mlflow's hook opens one MLflow run per ``kedro run`` and logs the parameters that
the pipeline's nodes receive (flattened: ``training.batch_size``). This hook adds what a
data team needs to trust and repeat the run:

- tags ``git_commit``, ``git_dirty``, ``kedro_pipeline``, ``seed``, ``torch_version``,
  ``cuda_version``;
- ``data_version`` (the DVC hash of the image folder when DVC tracks it, otherwise the
  manifest's content hash) and ``data_content_hash`` (what the run actually read), set
  as soon as ingestion has written the manifest;
- ``generator_sha256``, a hash of the trained weights, which ``atelier.reproduce``
  compares against, and ``training_device``;
- ``inception_weights_sha256`` and, for anything but pytorch-fid's official file,
  ``inception_weights_warning``;
- ``reproduces``, the original run's id, when ``atelier.reproduce`` started the run;
- the whole resolved configuration as the artifact ``config/parameters.json``.

kedro-mlflow's hook is registered after this one, so it runs first and the run is open here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mlflow
import torch
from kedro.framework.hooks import hook_impl

from atelier.lineage import content_hash, dvc_data_version, git_state, state_dict_sha256

logger = logging.getLogger(__name__)

# Set by ``python -m atelier.reproduce`` for the run it starts.
REPRODUCES_ENV = "ATELIER_REPRODUCES_RUN_ID"


class LineageHook:
    """Record code, data and configuration lineage on the active MLflow run."""

    def __init__(self) -> None:
        self._project_path = Path.cwd()
        self._params: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project_path = Path(context.project_path)
        self._params = context.params

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if mlflow.active_run() is None:
            return
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        tags = {
            "kedro_pipeline": "+".join(names),
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda or "none",
            "seed": str(self._params.get("training", {}).get("seed", "")),
        }
        state = git_state(self._project_path)
        if state is None:
            logger.warning("Not a git checkout: the run records no git_commit and cannot be reproduced exactly.")
        else:
            tags.update(git_commit=state.commit, git_dirty=str(state.dirty).lower())
            if state.dirty:
                logger.warning("The git tree has uncommitted changes to tracked files; "
                               "git_commit %s alone will not reproduce this run.", state.commit[:12])
        if os.environ.get(REPRODUCES_ENV):
            tags["reproduces"] = os.environ[REPRODUCES_ENV]
        mlflow.set_tags(tags)
        mlflow.log_dict(self._params, "config/parameters.json")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        if mlflow.active_run() is None:
            return
        if dataset_name == "manifest":
            source = self._params.get("ingestion", {}).get("source", "data/01_raw/images")
            data_hash = content_hash(data["path"].tolist(), data["sha256"].tolist())
            dvc_hash = dvc_data_version(self._project_path, source)
            mlflow.set_tags({
                "data_version": f"dvc:{dvc_hash}" if dvc_hash else f"content:{data_hash}",
                "data_content_hash": data_hash,
                "data_source": str(source),
            })
        elif dataset_name == "generator":
            mlflow.set_tags({"generator_sha256": state_dict_sha256(data["state_dict"]),
                             "training_device": data.get("training_device", "unknown")})
        elif dataset_name == "metrics":
            # A stand-in Inception network must never pass for the real one in the UI.
            mlflow.set_tag("inception_weights_sha256", data.get("inception_weights_sha256", ""))
            if data.get("inception_weights_warning"):
                mlflow.set_tag("inception_weights_warning", data["inception_weights_warning"])
