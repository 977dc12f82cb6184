"""``LineageHook``: lineage tags on every MLflow run.

kedro-mlflow's hook opens one MLflow run per ``kedro run`` and logs the parameters that
the pipeline's nodes receive (flattened: ``training.batch_size``). This hook adds what a
data team needs to trust and repeat the run, from datasets the pipelines produce (it
computes nothing itself):

- tags ``kedro_pipeline``, ``seed``, ``torch_version``, ``cuda_version``, and
  ``reproduces`` (the original run's id) when ``atelier.reproduce`` started the run;
- from the ``lineage`` dataset (written by data_ingestion's ``record_lineage`` node, read
  by registration): ``git_commit``, ``git_dirty``, ``data_version`` (the DVC hash of the
  image folder when DVC tracks it, otherwise ``content:<data_hash>``), ``data_hash``
  (what the run actually read) and ``data_source``;
- from ``generator``: ``generator_sha256`` (a hash of the trained weights, which
  ``atelier.reproduce`` compares against), ``training_device``, ``generator_step`` and
  ``generator_variant`` (which weights model selection chose), and for a fine-tune the
  parent's identity (``parent_model``, ``init_from``, ``parent_name``, ``parent_version``,
  ``parent_run_id``, ``parent_generator_sha256``...: ``atelier.tracking.parent_tags``);
- from ``training_state``: ``training_state_sha256`` (what a fine-tune of this run checks
  the downloaded artifact against);
- from ``metrics``: ``inception_weights_sha256`` and, for anything but pytorch-fid's
  official file, ``inception_weights_warning``;
- the whole resolved configuration as the artifact ``config/parameters.json``;
- when ``primary_images`` is saved or loaded: the training and validation images as MLflow
  datasets (the run page's *Datasets* panel; ``atelier.tracking.datasets``), and when
  preprocessing wrote shards, ``shards_location`` and ``shards_key``;

kedro-mlflow's hook is registered after this one, so it runs first and the run is open here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
import torch
from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError

from atelier.core.storage import state_dict_sha256
from atelier.tracking import REPRODUCES_ENV, lineage_tags, log_image_datasets, parent_tags
from atelier.tracking.parents import TRAINING_STATE_TAG

logger = logging.getLogger(__name__)


class LineageHook:
    """Record code, data and configuration lineage on the active MLflow run."""

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._project_path = "."
        self._catalog = None
        self._datasets_logged_in: set[str] = set()

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = context.params
        self._project_path = str(context.project_path)

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
        if os.environ.get(REPRODUCES_ENV):
            tags["reproduces"] = os.environ[REPRODUCES_ENV]
        mlflow.set_tags(tags)
        mlflow.log_dict(self._params, "config/parameters.json")
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        self._tag(dataset_name, data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node) -> None:
        if dataset_name in ("lineage", "primary_images"):  # a run that starts later still records them
            self._tag(dataset_name, data)

    def _tag(self, dataset_name: str, data: Any) -> None:
        if mlflow.active_run() is None:
            return
        if dataset_name == "lineage":
            mlflow.set_tags(lineage_tags(data))
        elif dataset_name == "primary_images":
            self._log_datasets(data)
            if "shards" in data:  # where the images this run trained on are, and which
                mlflow.set_tags({"shards_location": data["shards"]["location"],
                                 "shards_key": data["shards"]["key"]})
        elif dataset_name == "generator":
            mlflow.set_tags({"generator_sha256": state_dict_sha256(data.state_dict),
                             "training_device": data.training_device,
                             "generator_step": str(data.step),
                             "generator_variant": data.variant,
                             **parent_tags(data.parent)})
        elif dataset_name == "training_state":
            mlflow.set_tag(TRAINING_STATE_TAG, data.sha256())
        elif dataset_name == "metrics":
            # A stand-in Inception network must never pass for the real one in the UI.
            mlflow.set_tag("inception_weights_sha256", data.get("inception_weights_sha256", ""))
            if data.get("inception_weights_warning"):
                mlflow.set_tag("inception_weights_warning", data["inception_weights_warning"])

    def _log_datasets(self, primary_images: dict) -> None:
        run_id = mlflow.active_run().info.run_id
        if run_id in self._datasets_logged_in or self._catalog is None:
            return
        try:
            manifest = self._catalog.load("manifest")
            lineage = self._catalog.load("lineage")
        except DatasetError as error:  # e.g. primary_images built elsewhere
            logger.warning("Not logging the run's datasets to MLflow: %s", error)
            return
        log_image_datasets(manifest, primary_images, lineage, self._project_path)
        self._datasets_logged_in.add(run_id)
