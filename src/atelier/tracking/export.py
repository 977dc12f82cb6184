"""The ONNX export's MLflow side: the generator a model URI names, and the ONNX file logged
beside the registered pyfunc model.

The export itself (graph, checks, metadata, seed latents) is :mod:`atelier.core.export`;
``atelier export onnx`` (:mod:`atelier.export_cli`) and the registration
(``registration.onnx``, :func:`atelier.tracking.registry.register_generator_version`) call
this module.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from atelier.core.errors import GeneratorNotFoundError
from atelier.core.export import export_onnx, load_exportable
from atelier.core.models import GeneratorCheckpoint
from atelier.tracking.registry import LOGGED_MODEL_NAME, download_generator_file
from atelier.tracking.store import registered_reference
from atelier.tracking.versions import connect_registry

logger = logging.getLogger(__name__)

#: Where the registration logs the ONNX file and its seed latents in the run.
ONNX_ARTIFACT_DIR = "onnx"
ONNX_FILE = "generator.onnx"
#: The seeds whose latents the registration logs: the gallery's first page (64 images from
#: seed 0).
REGISTRATION_SEEDS = range(64)
URI_FORMS = ("models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID, or a generator file "
             "such as data/06_models/generator.pt")


@dataclass(frozen=True)
class GeneratorSource:
    """A generator and what it is, in words (``models:/atelier-generator@champion (version 3)``)."""

    checkpoint: GeneratorCheckpoint
    description: str


def resolve_generator(source: str, tracking_uri: str | None = None,
                      registry_uri: str | None = None) -> GeneratorSource:
    """The generator ``source`` names: a registered version by alias or number
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``), a run's logged model
    (``runs:/RUN_ID``, or ``runs:/RUN_ID/PATH``), a logged model (``models:/m-...``), or a
    generator file. ``models:/`` and ``runs:/`` are read from the store at ``tracking_uri``
    (and ``registry_uri``), which becomes this process's MLflow store. Raises
    :class:`GeneratorNotFoundError` (or the errors of
    :func:`~atelier.core.export.load_exportable`) with what to do."""
    if not source.startswith(("models:/", "runs:/")):
        if "://" in source and not source.startswith("file://"):
            raise GeneratorNotFoundError(f"{source!r} is neither a generator file nor a model URI "
                                         f"this export reads: give {URI_FORMS}.")
        path = Path(source.removeprefix("file://"))
        if not path.exists():
            raise GeneratorNotFoundError(f"{source!r} names no file and is not a model URI: give "
                                         f"{URI_FORMS}.")
        return GeneratorSource(load_exportable(path), str(path))
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    name, ref = registered_reference(source)
    # Also makes the store this process's MLflow store, which models:/ downloads read.
    versions = connect_registry(name, tracking_uri, registry_uri)
    description, model_uri = source, source
    if ref is not None:
        try:
            version = versions.resolve(ref)
        except LookupError as error:
            raise GeneratorNotFoundError(f"{source} does not resolve: {error}") from None
        description, model_uri = f"{source} (version {version})", f"models:/{name}/{version}"
    elif source.startswith("runs:/") and source.rstrip("/").count("/") == 1:
        model_uri = f"{source.rstrip('/')}/{LOGGED_MODEL_NAME}"  # the run's pyfunc model
    with tempfile.TemporaryDirectory() as tmp:
        try:
            file = download_generator_file(model_uri, tmp, tracking_uri)
        except (MlflowException, OSError) as error:
            reason = str(getattr(error, "message", error)).splitlines()[0]
            raise GeneratorNotFoundError(
                f"{source} does not resolve in the tracking store {tracking_uri}: {reason}. "
                f"Check the URI ({URI_FORMS}) and the store (--tracking-uri or "
                "MLFLOW_TRACKING_URI).") from None
        return GeneratorSource(load_exportable(file), description)


def log_onnx_export(generator: GeneratorCheckpoint) -> dict[str, str]:
    """Export ``generator`` to ONNX (checked against PyTorch) with the latents of
    :data:`REGISTRATION_SEEDS`, log both to the active run under ``onnx/`` and return their
    URIs (``onnx_uri``, ``onnx_latents_uri``)."""
    run = mlflow.active_run()
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(generator, Path(tmp) / ONNX_FILE, seeds=REGISTRATION_SEEDS,
                               where="the registered generator")
        mlflow.log_artifacts(tmp, ONNX_ARTIFACT_DIR)
    logger.info("Logged the ONNX export (%.1f MB, opset %d, %.2f s; ONNX Runtime within %d/255 "
                "of PyTorch) to %s/.", exported.size_bytes / 1e6, exported.opset,
                exported.seconds, exported.max_pixel_difference, ONNX_ARTIFACT_DIR)
    base = f"runs:/{run.info.run_id}/{ONNX_ARTIFACT_DIR}"
    return {"onnx_uri": f"{base}/{exported.path.name}",
            "onnx_latents_uri": f"{base}/{exported.latents_path.name}"}
