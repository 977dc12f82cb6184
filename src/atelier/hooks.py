"""Project hooks: lineage tags on every MLflow run.

kedro-mlflow's hook opens one MLflow run per ``kedro run`` and logs the parameters that
the pipeline's nodes receive (flattened: ``training.batch_size``). This hook adds what a
data team needs to trust and repeat the run:

- tags ``git_commit``, ``git_dirty``, ``kedro_pipeline``, ``seed``, ``torch_version``,
  ``cuda_version``;
- ``data_version`` (the DVC hash of the image folder when DVC tracks it, otherwise the
  manifest's content hash) and ``data_content_hash`` (what the run actually read), set
  as soon as ingestion has written the manifest;
- the whole resolved configuration as the artifact ``config/parameters.json``.

kedro-mlflow's hook is registered after this one, so it runs first and the run is open here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import torch
from kedro.framework.hooks import hook_impl

from atelier.lineage import dvc_data_version, git_state, manifest_content_hash

logger = logging.getLogger(__name__)


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
        mlflow.set_tags(tags)
        mlflow.log_dict(self._params, "config/parameters.json")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        if dataset_name != "manifest" or mlflow.active_run() is None:
            return
        content_hash = manifest_content_hash(
            data["path"].tolist(), data["sha256"].tolist(), data["status"].tolist()
        )
        source = self._params.get("ingestion", {}).get("source", "data/01_raw/images")
        dvc_hash = dvc_data_version(self._project_path, source)
        mlflow.set_tags({
            "data_version": f"dvc:{dvc_hash}" if dvc_hash else f"manifest:{content_hash}",
            "data_content_hash": content_hash,
            "data_source": str(source),
        })
