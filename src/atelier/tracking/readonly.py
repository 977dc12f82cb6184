"""Catalog entries that pipelines read and never write: their ``load`` asks a live source
(the MLflow run, the registry, git and DVC) for a value when a node needs it."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from kedro.io import AbstractDataset, DatasetError

T = TypeVar("T")


class ReadOnlyDataset(AbstractDataset[None, T], Generic[T]):
    """Base of the read-only catalog types; subclasses implement ``load``."""

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self.metadata = metadata

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: no node can write it.")

    def _describe(self) -> dict[str, Any]:
        return {}
