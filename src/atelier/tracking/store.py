"""Which MLflow tracking store to read: the one ``kedro run`` writes to, decided here once.

:func:`configured_store` is used by everything that reads the store outside a Kedro run:
the gallery, ``atelier export onnx``, ``python -m atelier.reproduce`` and ``make
mlflow-ui``. The order is the one
docs/architecture.md gives ("Which tracking store"): an explicit ``--tracking-uri``, else
``MLFLOW_TRACKING_URI``, else ``server.mlflow_tracking_uri`` of the project's
``conf/*/mlflow.yml``.

The configuration is read the way kedro-mlflow reads it, without starting a Kedro session:
``bootstrap_project`` finds the project (this folder or a parent) and configures its
settings, the project's own config loader (``settings.CONFIG_LOADER_CLASS`` and
``CONFIG_LOADER_ARGS``, so ``oc.env`` and the ``mlflow`` pattern work as in a run) loads
``mlflow`` for ``KEDRO_ENV`` (default ``local`` over ``base``), and kedro-mlflow's own
``KedroMlflowConfig`` validates it. A session would also run kedro-mlflow's
``after_context_created`` hook, which creates the experiment: a write, and several seconds
of schema migrations on a new SQLite file, that a read-only page should not cost.

Relative locations are taken from the project root, as in ``kedro run`` (which runs
there): a plain path as kedro-mlflow makes it absolute, and also a relative SQLite path
(``sqlite:///mlflow.db``, the embedded default), so the gallery finds the same store from
any folder of the project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

RELATIVE_SQLITE = "sqlite:///"


@dataclass(frozen=True)
class TrackingStore:
    """An MLflow tracking URI and its model registry URI (None: the tracking URI)."""

    tracking_uri: str
    registry_uri: str | None = None

    def missing_sqlite_file(self) -> Path | None:
        """The SQLite file this store names when it does not exist yet, else None."""
        for uri in (self.tracking_uri, self.registry_uri):
            if uri and uri.startswith(RELATIVE_SQLITE):
                path = Path(uri[len(RELATIVE_SQLITE):])
                if not path.exists():
                    return path
        return None

    def require_existing(self) -> None:
        """Raise ``LookupError`` (saying what to do) when the store is a SQLite file that does
        not exist yet: opening it would create an empty store, which holds no generator."""
        missing = self.missing_sqlite_file()
        if missing is not None:
            raise LookupError(
                f"The tracking store {self.tracking_uri} does not exist yet ({missing} is "
                "missing), so no generator is registered there. Run `make train` first, or "
                "point --tracking-uri (or MLFLOW_TRACKING_URI) at the store that holds one.")


def configured_store(tracking_uri: str | None = None, start: Path | None = None) -> TrackingStore:
    """The tracking store to read: ``tracking_uri`` when given, else ``MLFLOW_TRACKING_URI``,
    else the Kedro project's ``mlflow.yml`` (the project holding ``start``, default the
    current folder)."""
    if tracking_uri:
        return TrackingStore(tracking_uri, os.environ.get("MLFLOW_REGISTRY_URI") or None)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return TrackingStore(os.environ["MLFLOW_TRACKING_URI"],
                             os.environ.get("MLFLOW_REGISTRY_URI") or None)
    from kedro.utils import find_kedro_project

    folder = (start or Path.cwd()).resolve()
    project = find_kedro_project(folder)
    if project is None:
        raise LookupError(
            f"{folder} is not inside a Kedro project, so there is no conf/*/mlflow.yml to "
            "read the tracking store from. Run `atelier gallery` in the project folder, or "
            "give the store: --tracking-uri URI or MLFLOW_TRACKING_URI=URI.")
    server = _project_server_config(Path(project))
    tracking = server.mlflow_tracking_uri or "mlruns"
    registry = server.mlflow_registry_uri
    return TrackingStore(project_relative_uri(project, tracking),
                         project_relative_uri(project, registry) if registry else None)


def _project_server_config(project: Path):
    from kedro.config import MissingConfigException
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    bootstrap_project(project)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project / settings.CONF_SOURCE), env=os.environ.get("KEDRO_ENV"),
        **settings.CONFIG_LOADER_ARGS)
    if "mlflow" not in loader.config_patterns:
        loader.config_patterns["mlflow"] = ["mlflow*", "mlflow*/**", "**/mlflow*"]
    try:
        conf = loader["mlflow"]
    except MissingConfigException:
        conf = {}
    return KedroMlflowConfig.model_validate({**conf}).server


def project_relative_uri(project: str | os.PathLike, uri: str) -> str:
    """``uri`` with a relative location made absolute under ``project``: a plain path
    (``mlruns``) becomes a ``file://`` URI, as kedro-mlflow does, and a relative SQLite
    file (``sqlite:///mlflow.db``) a path under the project; anything else is unchanged."""
    project = Path(project).resolve()
    if uri.startswith(RELATIVE_SQLITE) and not uri.startswith(RELATIVE_SQLITE + "/"):
        return f"{RELATIVE_SQLITE}{project / uri[len(RELATIVE_SQLITE):]}"
    if uri in ("databricks", "databricks-uc") or urlsplit(uri).scheme:
        return uri
    path = Path(uri)
    return (path if path.is_absolute() else project / path).as_uri()


def ensure_experiment(client, name: str, *, artifact_location: str | None = None,
                      tags: dict | None = None) -> str:
    """The id of the experiment ``name``, created when it does not exist yet.

    Safe when several processes do it at once against one store: the losers of the create
    (``RESOURCE_ALREADY_EXISTS``, the server's unique name) read the winner's experiment.
    A deleted experiment is returned as it is (kedro-mlflow restores it, when its
    ``restore_if_deleted`` says so).
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location, tags=tags)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    experiment = client.get_experiment_by_name(name)
    if experiment is None:  # created and deleted for good in between: nothing to wait for
        raise LookupError(f"The MLflow experiment {name!r} was created by another process "
                          "and removed before this run could read it; run again.")
    return experiment.experiment_id


def registered_reference(source: str) -> tuple[str, str | None]:
    """``(name, alias or version)`` of ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``;
    ``(source, None)`` for anything else (a run, a logged model ``models:/m-...``)."""
    if not source.startswith("models:/"):
        return source, None
    body = source.removeprefix("models:/").strip("/")
    name, at, alias = body.partition("@")
    if at:
        return name, alias
    name, slash, version = body.partition("/")
    return (name, version) if slash else (source, None)
