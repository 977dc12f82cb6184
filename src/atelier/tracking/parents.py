"""The model a fine-tune starts from (``training.init_from``), resolved in MLflow.

Every training run logs its :class:`~atelier.core.training.parent.TrainingState` as the
run artifact ``training_state.pt`` (the catalog's ``training_state``; the run's tag
``training_state_sha256`` holds its identity), beside the servable model and not inside
it, so serving stays small. :func:`resolve_parent` finds that artifact for:

- ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``: the version's run;
- ``runs:/RUN_ID``: that run;
- a local ``training_state.pt`` or training checkpoint ``step_*.pt``.

It checks the download against the recorded sha256, and returns a
:class:`~atelier.core.training.parent.ParentModel` whose ``identity`` (name, version, run
id, data version, generator and training-state sha256s, the ``init_from`` given) becomes
the lineage of the fine-tuned run and version. Every failure is a
:class:`~atelier.core.errors.ParentModelError` that says what to do, raised before any
training.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from atelier.core.errors import ParentModelError
from atelier.core.storage import state_dict_sha256
from atelier.core.training.parent import ParentModel, TrainingState, describe_parent
from atelier.tracking.store import registered_reference

#: The run artifact every training run logs (the catalog's ``training_state`` entry).
TRAINING_STATE_ARTIFACT = "training_state.pt"
#: The run tag holding ``TrainingState.sha256()`` of that artifact.
TRAINING_STATE_TAG = "training_state_sha256"
FORMS = ("models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID, or a training_state.pt / "
         "step_*.pt file")


def resolve_parent(init_from: str, client: MlflowClient) -> ParentModel:
    """The parent ``init_from`` names, with its identity (see the module docstring)."""
    if init_from.startswith("models:/"):
        name, version, run_id = _registered_version(init_from, client)
        return _from_run(init_from, client, run_id, {"name": name, "version": version})
    if init_from.startswith("runs:/"):
        run_id = init_from.removeprefix("runs:/").strip("/").split("/")[0]
        if not run_id:
            raise ParentModelError(f"training.init_from={init_from!r} names no run: give {FORMS}.")
        return _from_run(init_from, client, run_id, {})
    if "://" in init_from and not init_from.startswith("file://"):
        raise ParentModelError(f"training.init_from={init_from!r} is neither a model URI nor a "
                               f"file: give {FORMS}.")
    state = TrainingState.load(Path(init_from.removeprefix("file://")))
    return ParentModel(state, _identity(init_from, state, {}))


def _registered_version(uri: str, client: MlflowClient) -> tuple[str, str, str]:
    """``(name, version, run id)`` of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    name, ref = registered_reference(uri)
    by_alias = ref is not None and "@" in uri.removeprefix("models:/")
    if ref is None or not name or not (by_alias or ref.isdigit()):
        raise ParentModelError(f"training.init_from={uri!r} is not a registered version: "
                               f"give {FORMS}.")
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise ParentModelError(
            f"training.init_from={uri!r}: there is no registered model {name!r} in the "
            f"tracking store {client.tracking_uri}. Train and register one first (kedro run "
            "--pipeline=train), or check registration.model_name and MLFLOW_TRACKING_URI."
        ) from None
    try:
        found = (client.get_model_version_by_alias(name, ref) if by_alias
                 else client.get_model_version(name, ref))
    except MlflowException:
        raise ParentModelError(
            f"training.init_from={uri!r}: the alias {ref!r} of {name} points nowhere (no "
            f"version holds it). Name a version instead (models:/{name}/VERSION), or give "
            "a version the alias first." if by_alias
            else f"training.init_from={uri!r}: {name} has no version {ref}.") from None
    if not found.run_id:
        raise ParentModelError(f"{name} v{found.version} was registered without a run, so it "
                               "has no training state to fine-tune from.")
    return name, str(found.version), found.run_id


def _from_run(source: str, client: MlflowClient, run_id: str, known: dict[str, str]) -> ParentModel:
    what = f"{known['name']} v{known['version']} (run {run_id})" if known else f"run {run_id}"
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ParentModelError(f"training.init_from={source!r}: {what} does not exist in the "
                               f"tracking store {client.tracking_uri}.") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, TRAINING_STATE_ARTIFACT, tmp)
        except (MlflowException, OSError) as error:
            reason = str(getattr(error, "message", error)).strip().splitlines()[0]
            raise ParentModelError(
                f"training.init_from={source!r}: {what} has no {TRAINING_STATE_ARTIFACT} "
                f"artifact ({reason}). Its run artifacts were deleted, or it was trained before "
                "Atelier kept the discriminator for fine-tuning: fine-tune from another "
                "version, or train this one again.") from None
        state = TrainingState.load(local)
    recorded, found = run.data.tags.get(TRAINING_STATE_TAG), state.sha256()
    if recorded and recorded != found:
        raise ParentModelError(
            f"training.init_from={source!r}: the {TRAINING_STATE_ARTIFACT} of {what} is not "
            f"the one its run recorded (sha256 {found[:12]}, recorded "
            f"{recorded[:12]}): the artifact was replaced. Fine-tune from another version.")
    known = {**known, "run_id": run_id,
             "data_version": run.data.tags.get("data_version", "")}
    return ParentModel(state, _identity(source, state, known, found))


def _identity(source: str, state: TrainingState, known: dict[str, str],
              state_sha256: str | None = None) -> dict[str, str]:
    return {"source": source, **{k: v for k, v in known.items() if v},
            "generator_sha256": state_dict_sha256(state.generator.state_dict),
            "training_state_sha256": state_sha256 or state.sha256()}


def parent_tags(identity: dict[str, str]) -> dict[str, str]:
    """Tags for a fine-tuned run and its registered version (empty for a run from scratch):
    ``parent_model`` (``atelier-generator v3``), ``init_from`` and ``parent_<key>`` for
    every key of the identity."""
    if not identity:
        return {}
    tags = {"parent_model": describe_parent(identity), "init_from": identity.get("source", "")}
    for key in ("name", "version", "run_id", "data_version", "generator_sha256",
                "training_state_sha256"):
        if identity.get(key):
            tags[f"parent_{key}"] = identity[key]
    return tags


def fine_tuned_from(identity: dict[str, str]) -> str:
    """``fine-tuned from atelier-generator v3 (data version md5:..., run ...)``: the line of a
    model card, a version description and the gallery; empty for a run from scratch."""
    if not identity:
        return ""
    details = [f"data version {identity['data_version']}" if identity.get("data_version") else "",
               f"run {identity['run_id']}" if identity.get("run_id") else ""]
    details = [detail for detail in details if detail]
    return f"fine-tuned from {describe_parent(identity)}" + (
        f" ({', '.join(details)})" if details else "")
