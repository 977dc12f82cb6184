"""Checks that run before any node: a run that cannot finish stops before it does any work.

Every parameter namespace a run's pipeline reads is validated first, so a bad value
anywhere stops the run at once with a message naming the key, instead of after ingestion,
preprocessing or training:

- ``ingestion.*`` (when the run ingests): the source is named, the size limits are
  positive whole numbers, ``workers`` null or at least 1;
- ``preprocessing.*`` (when the run preprocesses): ``channels`` 1 or 3, ``allow_upscale``,
  ``val_fraction`` in [0, 1), ``workers`` null or at least 1, ``storage`` and the shard
  settings (with ``storage: shards`` the location must take a write), ``cluster``, and ``resolution`` one the
  networks can be built for when the run also trains (a power of two, at least 16; a run
  that only trains takes the resolution of the preprocessed tensor);
- ``training.*`` (when the run trains): ``TrainingConfig.from_params``;
- ``evaluation.*`` (when the run trains, evaluates or registers; training reads its
  ``grid_size``, and with model selection its Inception settings):
  ``EvaluationConfig.from_params`` (``is_splits=0``, ``fid_dims=100``... are refused), and
  ``inception_weights: official`` (or a path) must resolve to a usable file; ``auto``
  never blocks (it falls back to the labelled stand-in).
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from atelier.core.metrics import EvaluationConfig, resolve_inception_weights
from atelier.core.models import check_resolution
from atelier.core.params import as_bool, as_float, as_int
from atelier.core.shards import Store
from atelier.core.training import TrainingConfig
from atelier.pipelines.preprocessing.engines import cluster_address
from atelier.pipelines.preprocessing.nodes import DEFAULT_SHARDS, storage_setting

logger = logging.getLogger(__name__)

# Which nodes read which namespace.
_INGESTING = {"inspect_source"}
_PREPROCESSING = {"preprocess_images"}
_TRAINING = {"train_generator"}
_SCORING = {"train_generator", "evaluate_generator", "draw_sample_grids", "register_generator"}
_INGESTION_LIMITS = ("max_archive_member_bytes", "max_archive_total_bytes", "max_archive_members",
                     "max_image_pixels", "max_file_bytes")


def check_ingestion(ingestion: dict) -> None:
    """Refuse ``ingestion`` parameters the ingestion node would fail on, naming the key."""
    if not str(ingestion.get("source") or "").strip():
        raise ValueError("ingestion.source must name the image folder or archive "
                         "(conf/base/parameters_data_ingestion.yml).")
    for name in _INGESTION_LIMITS:
        if as_int(f"ingestion.{name}", ingestion.get(name)) < 1:
            raise ValueError(f"ingestion.{name} must be at least 1, got {ingestion.get(name)!r}.")
    if "allow_upscale" in ingestion:
        raise ValueError("ingestion.allow_upscale is now preprocessing.allow_upscale (the size "
                         "rule is preprocessing's: it knows the resolution); move the setting.")
    check_workers("ingestion.workers", ingestion.get("workers"))


def check_preprocessing(preprocessing: dict, architecture: str | None) -> None:
    """Refuse ``preprocessing`` parameters the preprocessing node (or, when the run trains
    networks of ``architecture``, those networks) would fail on, naming the key."""
    resolution = as_int("preprocessing.resolution", preprocessing.get("resolution"))
    if architecture is not None:
        check_resolution(resolution, architecture)
    elif resolution < 1:
        raise ValueError(f"preprocessing.resolution must be at least 1, got {resolution}.")
    if as_int("preprocessing.channels", preprocessing.get("channels")) not in (1, 3):
        raise ValueError("preprocessing.channels must be 1 (grayscale) or 3 (RGB), got "
                         f"{preprocessing.get('channels')!r}.")
    if not 0 <= as_float("preprocessing.val_fraction", preprocessing.get("val_fraction")) < 1:
        raise ValueError("preprocessing.val_fraction must be in [0, 1), got "
                         f"{preprocessing.get('val_fraction')!r}.")
    as_bool("preprocessing.allow_upscale", preprocessing.get("allow_upscale", False))
    check_workers("preprocessing.workers", preprocessing.get("workers"))
    check_storage(preprocessing)


def check_storage(preprocessing: dict) -> None:
    """Refuse a bad ``preprocessing.storage``, ``shard_mb``, ``shards_above_gb``,
    ``cluster`` (or ``ATELIER_DASK_SCHEDULER``), and with ``storage: shards`` a ``shards``
    location that cannot be written (a probe: a missing bucket stops the run before the
    images are ingested, not after they are decoded)."""
    storage = storage_setting(preprocessing)
    for key in ("shard_mb", "shards_above_gb"):
        if key in preprocessing and not as_float(f"preprocessing.{key}", preprocessing[key]) > 0:
            raise ValueError(f"preprocessing.{key} must be positive, got {preprocessing[key]!r}.")
    cluster_address(preprocessing.get("cluster"))
    if storage != "tensor":
        location = Store(str(preprocessing.get("shards") or DEFAULT_SHARDS))  # refuses gs:// etc.
        if storage == "shards":
            location.check_writable()


def check_workers(key: str, workers: Any) -> None:
    """Refuse a decoding-process count other than null (one per core) or a whole number >= 1."""
    if workers is not None and as_int(key, workers) < 1:
        raise ValueError(f"{key} must be null (all cores) or at least 1, got {workers!r}.")


class PreflightHook:
    """Refuse, before the first node, a run with a bad parameter in any namespace its
    pipeline reads, or whose Inception weights cannot be had."""

    # tryfirst: refuse before kedro-mlflow's hook opens an MLflow run that would stay RUNNING.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        nodes = {node.name for node in pipeline.nodes}
        trains = bool(_TRAINING & nodes)
        if _INGESTING & nodes:
            check_ingestion(catalog.load("params:ingestion"))
        training = TrainingConfig.from_params(catalog.load("params:training")) if trains else None
        if _PREPROCESSING & nodes:  # a run that only trains takes the tensor's resolution
            check_preprocessing(catalog.load("params:preprocessing"),
                                training.architecture if training else None)
        if not _SCORING & nodes:  # training reads evaluation.grid_size even without selection
            return
        evaluation = EvaluationConfig.from_params(catalog.load("params:evaluation"))
        scores = not (nodes & _SCORING == _TRAINING and not training.eval_every)
        if evaluation.inception_weights == "auto" or not scores:
            return
        weights = resolve_inception_weights(evaluation.inception_weights)  # raises with what to do
        logger.info("Inception weights for this run: %s (%s).", weights.path,
                    "official" if weights.is_official else "NOT the official file")
