"""Live training progress in MLflow: the reporter the training loop calls.

kedro-mlflow's datasets log an output when its node finishes; a GPU run of hours needs
its curves while it trains. The catalog entry ``training_reporter``
(:class:`TrainingReporterDataset`) hands the training node a :class:`TrainingReporter`
bound to the run kedro-mlflow opened; the loop calls it every ``training.log_every`` steps
and it writes ``loss_d``, ``loss_g`` and ``images_per_sec`` (and any in-training scores)
with their step, and the EMA sample grids (every ``training.sample_every`` steps) to the
run's image series ``training_samples`` (the UI's step slider). Without an active run
(tracking disabled) it only logs to the console.
"""

from __future__ import annotations

import logging
import time

import mlflow
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from atelier.core.generate import image_grid

logger = logging.getLogger(__name__)


class TrainingReporter:
    """``report(step, metrics, samples=None)`` for :func:`atelier.core.training.train_gan`.

    The run id is captured when the reporter is made, so it keeps logging to the right run
    from any thread.
    """

    def __init__(self) -> None:
        run = mlflow.active_run()
        self.run_id = run.info.run_id if run else None
        self._client = MlflowClient() if run else None

    def __call__(self, step: int, metrics: dict[str, float], samples: torch.Tensor | None = None) -> None:
        logger.info("step %d: %s", step, "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        self._client.log_batch(
            self.run_id, metrics=[Metric(key, float(value), now, step) for key, value in metrics.items()]
        )
        if samples is not None:
            self._client.log_image(self.run_id, image_grid(samples), key="training_samples", step=step)
