"""Checks that run before any node: a run that cannot finish stops before it trains.

- ``training.*``: a run that trains builds its ``TrainingConfig`` first, so a bad training
  value (``training.augment_p=1.5``, an unknown policy...) stops the run before ingestion
  and preprocessing, with the message that names the key.
- ``evaluation.inception_weights: official`` (or a path) must resolve to a usable file
  when the run evaluates or scores during training; ``auto`` never blocks (it falls back
  to the labelled stand-in).
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from atelier.core.metrics import resolve_inception_weights
from atelier.core.training import TrainingConfig

logger = logging.getLogger(__name__)

# Nodes that need the Inception weights.
_SCORING_NODES = {"evaluate_generator", "train_generator"}


class PreflightHook:
    """Refuse, before the first node, a run with bad training parameters or whose Inception
    weights cannot be had."""

    # tryfirst: refuse before kedro-mlflow's hook opens an MLflow run that would stay RUNNING.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        nodes = {node.name for node in pipeline.nodes}
        if "train_generator" in nodes:
            TrainingConfig.from_params(catalog.load("params:training"))  # raises naming the key
        if not _SCORING_NODES & nodes:
            return
        setting = catalog.load("params:evaluation.inception_weights")
        if setting is None or setting == "auto":
            return
        weights = resolve_inception_weights(setting)  # raises with what to do
        logger.info("Inception weights for this run: %s (%s).", weights.path,
                    "official" if weights.is_official else "NOT the official file")



