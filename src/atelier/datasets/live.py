"""Catalog entries that pipelines read and never write: their ``load`` asks a live source
(the MLflow run, the registry, git and DVC, through the tracking adapter) for a value when a
node needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, TypeVar

from kedro.io import AbstractDataset, DatasetError

from atelier.tracking import ModelRegistry, TrainingReporter, dvc_versions, git_state

T = TypeVar("T")


class ReadOnlyDataset(AbstractDataset[None, T], Generic[T]):
    """Base of the read-only catalog types; subclasses implement ``load``."""

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self.metadata = metadata

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: no node can write it.")

    def _describe(self) -> dict[str, Any]:
        return {}


class SourceVersionDataset(ReadOnlyDataset[dict]):
    """Read-only: the code and data versions of the project checkout, read at load time.

    ``load()`` returns ``{"git_commit": str | None, "git_dirty": bool | None,
    "dvc_versions": {path: md5}}``. Example catalog entry::

        source_version:
          type: atelier.datasets.SourceVersionDataset
    """

    def __init__(self, project_path: str = ".", metadata: dict[str, Any] | None = None) -> None:
        super().__init__(metadata)
        self._project_path = Path(project_path)

    def load(self) -> dict:
        state = git_state(self._project_path)
        return {"git_commit": state.commit if state else None,
                "git_dirty": state.dirty if state else None,
                "dvc_versions": dvc_versions(self._project_path)}

    def _describe(self) -> dict[str, Any]:
        return {"project_path": str(self._project_path)}


class TrainingReporterDataset(ReadOnlyDataset[TrainingReporter]):
    """Read-only: a ``TrainingReporter`` for the MLflow run active when it is loaded.

    Example catalog entry::

        training_reporter:
          type: atelier.datasets.TrainingReporterDataset
    """

    def load(self) -> TrainingReporter:
        return TrainingReporter()


class ModelRegistryDataset(ReadOnlyDataset[ModelRegistry]):
    """Read-only: the MLflow model registry, as a ``ModelRegistry``.

    Example catalog entry::

        model_registry:
          type: atelier.datasets.ModelRegistryDataset
    """

    def load(self) -> ModelRegistry:
        return ModelRegistry()
