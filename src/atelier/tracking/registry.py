"""Model registry logic: log the generator as a pyfunc model, register it, and promote it.

Every new version gets the alias ``challenger``. It takes ``champion`` only when its FID
is lower than the current champion's by at least ``min_fid_improvement`` (or when there
is no champion). The read-compare-write of the champion runs under a lock held on the
tracking server itself (a lock entry created with ``create_registered_model``, which the
server's database lets only one caller create), so two registrations racing from
different machines cannot leave a champion with a worse FID.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema, TensorSpec

from atelier.core.metrics import SCORE_NAMES
from atelier.core.models import GeneratorCheckpoint
from atelier.tracking.hooks import lineage_tags
from atelier.tracking.model import GENERATOR_ARTIFACT, GeneratorModel

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate becomes champion, and why (written to the run and the version)."""

    promote: bool
    reason: str


def decide_promotion(
    candidate_fid: float, champion_fid: float | None, min_fid_improvement: float
) -> PromotionDecision:
    """Promote when there is no champion, or when FID drops by at least the margin.

    Lower FID is better. A non-finite candidate FID is never promoted.
    """
    if not np.isfinite(candidate_fid):
        return PromotionDecision(False, f"candidate FID {candidate_fid} is not finite")
    if champion_fid is None:
        return PromotionDecision(True, f"no champion yet; FID {candidate_fid:.4f}")
    needed = champion_fid - min_fid_improvement
    if candidate_fid <= needed:
        return PromotionDecision(
            True,
            f"FID {candidate_fid:.4f} beats champion's {champion_fid:.4f} by "
            f"{champion_fid - candidate_fid:.4f} (>= min_fid_improvement {min_fid_improvement})",
        )
    return PromotionDecision(
        False,
        f"FID {candidate_fid:.4f} does not beat champion's {champion_fid:.4f} by "
        f"min_fid_improvement {min_fid_improvement} (needed <= {needed:.4f})",
    )


@contextmanager
def promotion_lock(
    client: MlflowClient, model_name: str, timeout_s: float = 300.0, stale_after_s: float = 600.0
) -> Iterator[None]:
    """Hold the promotion lock for ``model_name`` on the tracking server.

    The lock is a registered model named ``<model_name>-promotion-lock``: creating it
    succeeds for exactly one caller (a unique key in the server's database); the others
    wait and retry. A lock older than ``stale_after_s`` (its holder crashed) is broken.
    """
    lock_name = f"{model_name}-promotion-lock"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock_name,
                tags={"holder": holder, "acquired_at": f"{time.time():.3f}"},
                description=f"Held by {holder} while it decides {model_name}'s champion; "
                "deleted right after. Safe to delete if older than a few minutes.",
            )
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            acquired_at = float(client.get_registered_model(lock_name).tags.get("acquired_at", "0"))
            if time.time() - acquired_at > stale_after_s:
                logger.warning("Breaking a stale promotion lock %s (held since %.0f).", lock_name, acquired_at)
                client.delete_registered_model(lock_name)
                continue
        except MlflowException:
            continue  # released between our create and our read: try again at once
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Could not take the promotion lock {lock_name!r} within {timeout_s:.0f} s. "
                "If no registration is running, delete that registered model and retry."
            )
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        client.delete_registered_model(lock_name)


def champion_fid(client: MlflowClient, model_name: str) -> tuple[str | None, float | None]:
    """The current champion's version and FID (from its ``fid`` tag), or ``(None, None)``."""
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None, None
    fid = version.tags.get("fid")
    return version.version, (float(fid) if fid is not None else None)


def generator_signature(config: dict) -> ModelSignature:
    """Input: ``seed`` (long, required), ``truncation`` (double, optional); output: uint8
    images ``(rows, height, width, channels)``."""
    return ModelSignature(
        inputs=Schema([ColSpec("long", "seed"), ColSpec("double", "truncation", required=False)]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8),
                                   (-1, config["resolution"], config["resolution"], config["channels"]))]),
    )


def log_generator_model(generator: GeneratorCheckpoint, model_name: str):
    """Log ``generator`` to the active run as a pyfunc model.

    The model is registered as a new version of ``model_name``, with its signature and an
    input example. Returns MLflow's ``ModelInfo``.
    """
    example = pd.DataFrame({"seed": np.array([0, 1, 2], dtype=np.int64),
                            "truncation": np.array([0.0, 0.0, 1.5])})
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "generator.pt"
        generator.save(weights)
        return mlflow.pyfunc.log_model(
            name="generator",
            python_model=GeneratorModel(),
            artifacts={GENERATOR_ARTIFACT: str(weights)},
            signature=generator_signature(generator.config),
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=[f"torch>={torch.__version__.split('+')[0]}", "numpy", "pandas",
                              f"mlflow>={mlflow.__version__}"],
            # The package travels with the model, so it loads where Atelier is not installed.
            code_paths=[str(Path(__file__).parents[1])],
        )


def promote_if_better(
    client: MlflowClient, model_name: str, version: str, fid: float, min_fid_improvement: float
) -> PromotionDecision:
    """Give ``version`` the challenger alias, and the champion alias if it beats the champion.

    Runs under :func:`promotion_lock`; the decision and its reason become the version's
    description.
    """
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    with promotion_lock(client, model_name):
        current, current_fid = champion_fid(client, model_name)
        decision = decide_promotion(fid, current_fid, min_fid_improvement)
        if decision.promote:
            client.set_registered_model_alias(model_name, CHAMPION, version)
    verdict = "promoted to champion" if decision.promote else "challenger only"
    previous = f" (champion was version {current})" if current else ""
    client.update_model_version(model_name, version, description=f"{verdict}: {decision.reason}{previous}")
    logger.info("%s version %s: %s%s", model_name, version, verdict, previous)
    return decision


def decision_record(model_name: str, version: str, decision: PromotionDecision) -> dict:
    """The registration outcome as a plain dict (written to data/08_reporting)."""
    return {"model_name": model_name, "version": int(version), **asdict(decision)}


def register_generator_version(generator: GeneratorCheckpoint, metrics: dict, lineage: dict,
                               model_name: str, min_fid_improvement: float) -> dict:
    """Log ``generator`` as a pyfunc model in the active run, register it, maybe promote it.

    The new version is tagged with its scores and ``lineage`` (git commit, data version),
    gets the alias ``challenger`` and, through :func:`promote_if_better`, ``champion`` when it
    beats the current one. Returns the registration record: model name, version, run id,
    model URI, lineage, the decision and its reason (also tagged on the run and written to
    the version's description).
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "Registration needs an active MLflow run: run it through `kedro run` with "
            "kedro-mlflow enabled (conf/base/mlflow.yml), not with tracking disabled."
        )
    client = MlflowClient()
    info = log_generator_model(generator, model_name)
    version = str(info.registered_model_version)
    lineage = lineage_tags(lineage)
    version_tags = {
        **{key: str(metrics[key]) for key in SCORE_NAMES if key in metrics},
        "fid_dims": str(metrics.get("dims", "")),
        "inception_weights_sha256": str(metrics.get("inception_weights_sha256", "")),
        "run_id": run.info.run_id,
        "best_step": str(generator.step),
        **lineage,
    }
    if metrics.get("inception_weights_warning"):
        version_tags["inception_weights_warning"] = metrics["inception_weights_warning"]
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    decision = promote_if_better(client, model_name, version, float(metrics["fid"]),
                                 float(min_fid_improvement))
    mlflow.set_tags({"registration.version": version,
                     "registration.promoted": str(decision.promote).lower(),
                     "registration.reason": decision.reason})
    return {**decision_record(model_name, version, decision), "run_id": run.info.run_id,
            "model_uri": f"models:/{model_name}/{version}", **lineage}
