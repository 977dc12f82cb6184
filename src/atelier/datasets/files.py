"""Kedro datasets for the files Atelier's catalog names that kedro-datasets has no type for.

- ``TorchDataset``: a dict of tensors and plain values, saved with ``torch.save``
  atomically and loaded with ``torch.load(weights_only=True)`` (no pickle code runs).
- ``GeneratorDataset``: a trained generator (:class:`~atelier.core.models.GeneratorCheckpoint`)
  in one ``.pt`` file, written atomically, read without running pickled code.
- ``ImageFolderDataset``: a folder of image files as ``{relative path: encoded bytes}``;
  saving rewrites only files whose bytes differ, so re-running a writer is idempotent.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError

from atelier.core.models import GeneratorCheckpoint
from atelier.core.storage import write_atomically
from atelier.core.training.parent import TrainingState


class TorchDataset(AbstractDataset[dict, dict]):
    """A ``dict`` of tensors and plain Python values in one ``.pt`` file.

    Example catalog entry::

        primary_images:
          type: atelier.datasets.TorchDataset
          filepath: data/03_primary/images.pt
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict:
        if not self._filepath.exists():
            raise DatasetError(
                f"{self._filepath} does not exist. Run the pipeline that writes it first "
                "(see conf/base/catalog.yml)."
            )
        return torch.load(self._filepath, map_location="cpu", weights_only=True)

    def save(self, data: dict) -> None:
        write_atomically(self._filepath, lambda handle: torch.save(data, handle))

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class GeneratorDataset(TorchDataset):
    """A trained generator (:class:`~atelier.core.models.GeneratorCheckpoint`) in one ``.pt`` file.

    Example catalog entry::

        generator:
          type: atelier.datasets.GeneratorDataset
          filepath: data/06_models/generator.pt
    """

    def load(self) -> GeneratorCheckpoint:
        return GeneratorCheckpoint.from_dict(super().load())

    def save(self, data: GeneratorCheckpoint) -> None:
        super().save(data.to_dict())


class TrainingStateDataset(TorchDataset):
    """What a fine-tune of a run starts from (:class:`~atelier.core.training.TrainingState`:
    the selected generator, the discriminator of its step, the augmentation strength) in one
    ``.pt`` file. The catalog wraps it in kedro-mlflow's ``MlflowArtifactDataset``, so every
    run logs it as the artifact ``training_state.pt``, beside the servable model.

    Example catalog entry::

        training_state:
          type: atelier.datasets.TrainingStateDataset
          filepath: data/06_models/training_state.pt
    """

    def load(self) -> TrainingState:
        return TrainingState.from_dict(super().load(), source=str(self._filepath))

    def save(self, data: TrainingState) -> None:
        super().save(data.to_dict())


class ImageFolderDataset(AbstractDataset[dict, dict]):
    """A folder of encoded image files, as ``{relative POSIX path: bytes}``.

    ``save`` writes only files that are missing or whose bytes differ (atomically), and
    never deletes files it was not given: a studio's own images in the same folder are safe.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, bytes]:
        return {
            file.relative_to(self._path).as_posix(): file.read_bytes()
            for file in sorted(self._path.rglob("*"))
            if file.is_file()
        }

    def save(self, data: dict[str, bytes]) -> None:
        written = False
        for relative, content in data.items():
            relative_path = PurePosixPath(relative)
            if relative_path.is_absolute() or ".." in relative_path.parts:
                raise DatasetError(f"Refusing to write {relative!r} outside {self._path}.")
            target = self._path / relative_path
            if target.is_file() and target.read_bytes() == content:
                continue
            # One sync for the whole folder instead of two per file (~8 ms each).
            write_atomically(target, lambda handle, content=content: handle.write(content), fsync=False)
            written = True
        if written:
            os.sync()

    def _exists(self) -> bool:
        return self._path.is_dir() and any(p.is_file() for p in self._path.rglob("*"))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
