"""The registered model: log the generator as a pyfunc model, register it, fetch a version.

:func:`register_generator_version` is what the registration node calls: it logs the
generator to the run kedro-mlflow opened, registers it as a new version, tags it with its
scores and lineage, and lets :mod:`~atelier.tracking.promotion` decide the aliases.
:class:`ModelRegistryDataset` (catalog entry ``model_registry``) gives the evaluation
pipeline the current champion, to score it side by side with the candidate.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import RunInfo
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from atelier.core.generate import class_names_of
from atelier.core.metrics import SCORE_NAMES
from atelier.core.models import GeneratorCheckpoint
from atelier.core.training.parent import ParentModel
from atelier.tracking.datasets import run_dataset
from atelier.tracking.lineage import lineage_tags
from atelier.tracking.model import GENERATOR_ARTIFACT, OUTPUT_FORMATS, GeneratorModel
from atelier.tracking.model_code import model_requirements, stage_model_code
from atelier.tracking.parents import fine_tuned_from, parent_tags, resolve_parent
from atelier.tracking.promotion import (
    CHAMPION,
    PromotionDecision,
    Rescore,
    decision_record,
    decision_verdict,
    promote_if_better,
)

logger = logging.getLogger(__name__)

#: Where the run keeps the model card: the catalog's ``model_card`` entry
#: (``conf/base/catalog.yml``) logs ``data/08_reporting/model_card.md`` at the artifact root.
MODEL_CARD_ARTIFACT = "model_card.md"
#: The name of the pyfunc model in its run: ``runs:/<run_id>/generator``.
LOGGED_MODEL_NAME = "generator"


def generator_signature(config: dict) -> ModelSignature:
    """Input: ``seed`` (long, required), ``truncation`` (double, optional) and ``label``
    (string, optional: a class name of a class-conditional generator; declared for every
    model, so that a label sent to an unconditional one reaches it and is refused with a
    clear message instead of being dropped by MLflow's schema check); inference parameter
    ``format`` (string, default ``array``; ``png`` for base64 PNG files); output: uint8
    images ``(rows, height, width, channels)``, the ``array`` format."""
    columns = [ColSpec("long", "seed"), ColSpec("double", "truncation", required=False),
               ColSpec("string", "label", required=False)]
    return ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([TensorSpec(np.dtype(np.uint8),
                                   (-1, config["resolution"], config["resolution"], config["channels"]))]),
        params=ParamSchema([ParamSpec("format", "string", OUTPUT_FORMATS[0])]),
    )


def log_generator_model(generator: GeneratorCheckpoint, model_name: str):
    """Log ``generator`` to the active run as a pyfunc model.

    The model is registered as a new version of ``model_name``, with its signature and an
    input example (with a ``label`` column of class names for a conditional generator). It
    carries its own code and requirements (:mod:`~atelier.tracking.model_code`), so it
    loads and serves where Atelier is not installed. Returns MLflow's ``ModelInfo``.
    """
    example = pd.DataFrame({"seed": np.array([0, 1, 2], dtype=np.int64),
                            "truncation": np.array([0.0, 0.0, 1.5])})
    class_names = class_names_of(generator)
    if class_names:
        example["label"] = [class_names[0], class_names[-1], class_names[0]]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"{GENERATOR_ARTIFACT}.pt"
        generator.save(weights)
        return mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=GeneratorModel(),
            artifacts={GENERATOR_ARTIFACT: str(weights)},
            signature=generator_signature(generator.config),
            input_example=example,
            registered_model_name=model_name,
            pip_requirements=model_requirements(),
            code_paths=[str(stage_model_code(Path(tmp) / "code"))],
        )


def register_generator_version(generator: GeneratorCheckpoint, metrics: dict, lineage: dict,
                               registration: dict, rescore: Rescore | None = None) -> dict:
    """Log ``generator`` as a pyfunc model in the active run, register it, maybe promote it.

    The logged model (MLflow 3's ``model_id``) gets the scores as its metrics and what they
    were scored on as its params (:func:`log_model_scores`). The new version is tagged with
    its scores and ``lineage`` (git commit, data version), gets the alias ``challenger`` and,
    through :func:`promote_if_better`, ``champion`` when it beats the current one
    (``rescore`` scores a champion that changed after the evaluation, see
    :func:`~atelier.tracking.promotion.promote_if_better`); its description is
    :func:`version_description`. With ``registration["onnx"]`` the ONNX export and its seed
    latents are logged to the run under ``onnx/`` first (their ``runs:/`` URIs are tagged on
    the version as ``onnx_uri`` and ``onnx_latents_uri``). Returns the registration record:
    model name, version, run id, model URI, the ONNX URIs, lineage, the decision and its
    reason (also tagged on the run), and for a fine-tune ``parent`` (the parent's identity,
    also tagged on the version: :func:`~atelier.tracking.parents.parent_tags`).
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "Registration needs an active MLflow run: run it through `kedro run` with "
            "kedro-mlflow enabled (conf/base/mlflow.yml), not with tracking disabled."
        )
    client = MlflowClient()
    model_name = registration["model_name"]
    # First: a generator the export refuses stops the registration before any version exists.
    onnx = _log_onnx(generator) if registration.get("onnx") else {}
    info = log_generator_model(generator, model_name)
    version = str(info.registered_model_version)
    lineage = lineage_tags(lineage)
    log_model_scores(info.model_id, metrics, lineage, generator)
    version_tags = {
        **{key: str(metrics[key]) for key in SCORE_NAMES if key in metrics},
        "fid_dims": str(metrics.get("dims", "")),
        "inception_weights_sha256": str(metrics.get("inception_weights_sha256", "")),
        "run_id": run.info.run_id,
        "generator_step": str(generator.step),
        "generator_variant": generator.variant,
        **onnx,
        **lineage,
        **parent_tags(generator.parent),
    }
    if metrics.get("inception_weights_warning"):
        version_tags["inception_weights_warning"] = metrics["inception_weights_warning"]
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    decision = promote_if_better(client, model_name, version, metrics,
                                 float(registration["min_fid_improvement"]),
                                 registration["on_incompatible_champion"], rescore)
    for key, value in _champion_tags(decision.champion).items():
        client.set_model_version_tag(model_name, version, key, value)
    client.update_model_version(model_name, version, description=version_description(
        metrics, lineage, generator, decision, run.info))
    mlflow.set_tags({"registration.version": version,
                     "registration.promoted": str(decision.promote).lower(),
                     "registration.reason": decision.reason})
    return {**decision_record(model_name, version, decision), "run_id": run.info.run_id,
            "model_uri": f"models:/{model_name}/{version}", **onnx, **lineage,
            **({"parent": dict(generator.parent)} if generator.parent else {})}


def _log_onnx(generator: GeneratorCheckpoint) -> dict[str, str]:
    """``registration.onnx``: the ONNX export logged to the run (:mod:`~atelier.tracking.export`,
    imported here: it imports ``onnx`` and ONNX Runtime, a second that only this step pays,
    and it reads registered generators through this module)."""
    from atelier.tracking.export import log_onnx_export

    return log_onnx_export(generator)


def log_model_scores(model_id: str, metrics: dict, lineage: dict[str, str],
                     generator: GeneratorCheckpoint) -> None:
    """Log the evaluation's scores (:data:`SCORE_NAMES`) as metrics of the logged model
    ``model_id``, so that its page and ``mlflow.search_logged_models`` rank models by FID;
    and, as its params, what makes two FIDs comparable (data version, Inception weights,
    ``fid_dims``, sample count) and which weights were scored. The metrics are linked to the
    run's validation dataset when the run logged one.

    The champion's side-by-side scores stay on the run and the version's tags: they
    describe another model.
    """
    scores = {key: float(metrics[key]) for key in SCORE_NAMES if key in metrics}
    # Linked to the validation images the run logged (atelier.tracking.datasets), so the
    # model's page says what it was scored on ("Datasets used").
    run = mlflow.active_run()
    validation = run_dataset(run.info.run_id, "validation") if run else None
    mlflow.log_metrics(scores, step=0, model_id=model_id, dataset=validation)
    params = {
        "data_version": lineage.get("data_version"),
        "inception_weights_sha256": metrics.get("inception_weights_sha256"),
        "inception_weights_warning": metrics.get("inception_weights_warning"),
        "fid_dims": metrics.get("dims"),
        "num_samples": metrics.get("num_samples"),
        "generator_step": generator.step,
        "generator_variant": generator.variant,
    }
    mlflow.log_model_params({key: str(value) for key, value in params.items() if value is not None},
                            model_id=model_id)


def version_description(metrics: dict, lineage: dict[str, str], generator: GeneratorCheckpoint,
                        decision: PromotionDecision, run: RunInfo) -> str:
    """The registered version's description, in markdown: a one-line summary (the decision,
    FID, KID and IS, labelled STAND-IN unless scored with the official Inception weights), the
    decision's reason, the data version, which weights, the parent of a fine-tune, and a link to the run's model card;
    the Inception weights' warning, if any, last."""
    verdict = decision_verdict(decision)
    warning = metrics.get("inception_weights_warning")
    scores = [f"{label} {metrics[key]:.4f}" + (f" ± {metrics[spread]:.4f}" if spread in metrics else "")
              for label, key, spread in (("FID", "fid", None), ("KID", "kid", "kid_std"),
                                         ("IS", "inception_score", "inception_score_std"))
              if key in metrics]
    standin = " (STAND-IN Inception weights)" if warning else ""
    card = f"#/experiments/{run.experiment_id}/runs/{run.run_id}/artifactPath/{MODEL_CARD_ARTIFACT}"
    lines = [
        " · ".join([f"**{verdict}**", *scores]) + standin,
        "",
        f"- decision: {decision.reason}",
        f"- data version: `{lineage.get('data_version', 'unknown')}`",
        f"- weights: {generator.variant} generator of step {generator.step}",
        *([f"- {fine_tuned_from(generator.parent)}"] if generator.parent else []),
        f"- model card: [{MODEL_CARD_ARTIFACT}]({card}) "
        f"(`runs:/{run.run_id}/{MODEL_CARD_ARTIFACT}`)",
    ]
    if warning:
        lines += ["", f"**WARNING:** {warning}"]
    return "\n".join(lines)


def _champion_tags(champion: dict | None) -> dict[str, str]:
    if not champion:
        return {}
    tags = {"champion_version_scored": str(champion["version"])}
    if champion.get("incompatible"):
        tags["champion_incompatible"] = str(champion["incompatible"])
    else:
        tags.update({f"champion_{key}": str(champion[key]) for key in SCORE_NAMES if key in champion})
    return tags


@dataclass(frozen=True)
class RegisteredGenerator:
    """A registered version and its generator."""

    version: str
    generator: GeneratorCheckpoint


class ModelRegistry:
    """Reads registered generators from the tracking server kedro-mlflow configured."""

    def __init__(self, client: MlflowClient | None = None) -> None:
        self._client = client or MlflowClient()

    def champion(self, model_name: str) -> RegisteredGenerator | None:
        """The version holding the ``champion`` alias and its generator, or None."""
        try:
            version = self._client.get_model_version_by_alias(model_name, CHAMPION).version
        except MlflowException:
            return None
        return self.version(model_name, version)

    def parent(self, init_from: str | None) -> ParentModel:
        """The model ``training.init_from`` names (``ParentModel.none()`` for None: train from
        scratch), resolved in this store (:func:`atelier.tracking.parents.resolve_parent`)."""
        if init_from is None:
            return ParentModel.none()
        return resolve_parent(init_from, self._client)

    def version(self, model_name: str, version: str) -> RegisteredGenerator:
        """Registered ``version`` of ``model_name`` and its generator."""
        with tempfile.TemporaryDirectory() as tmp:
            generator = GeneratorCheckpoint.load(download_generator_file(
                f"models:/{model_name}/{version}", tmp, self._client.tracking_uri))
        return RegisteredGenerator(str(version), generator)


def download_generator_file(model_uri: str, destination: str | Path,
                            tracking_uri: str | None = None) -> Path:
    """Download the model ``model_uri`` (``models:/...``, ``runs:/<run_id>/generator``) into
    ``destination`` and return the path of its generator file."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(destination),
                                                tracking_uri=tracking_uri)
    files = sorted(Path(local).rglob(f"{GENERATOR_ARTIFACT}.pt"))
    if not files:
        raise FileNotFoundError(f"{model_uri} holds no {GENERATOR_ARTIFACT}.pt artifact; was it "
                                "logged by Atelier?")
    return files[0]
