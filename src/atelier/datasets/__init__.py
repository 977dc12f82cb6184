"""The project's Kedro catalog types, all here (``conf/base/catalog.yml`` names them).

- :mod:`.files`: files under ``data/``: ``TorchDataset`` (a ``torch.save`` dict),
  ``GeneratorDataset`` (a ``GeneratorCheckpoint``), ``TrainingStateDataset`` (a
  ``TrainingState``, what a fine-tune starts from), ``ImageFolderDataset`` (the bundled
  sample written as image files);
- :mod:`.live`: read-only entries whose value comes from a live source through the
  tracking adapter: ``SourceVersionDataset`` (git and DVC versions of the checkout),
  ``TrainingReporterDataset`` (live curves on the MLflow run), ``ModelRegistryDataset``
  (the registry: the champion to score side by side, the parent of a fine-tune).

Not to be confused with ``atelier.tracking.datasets``, which logs the run's images as
MLflow datasets.
"""

from atelier.datasets.files import (
    GeneratorDataset,
    ImageFolderDataset,
    TorchDataset,
    TrainingStateDataset,
)
from atelier.datasets.live import (
    ModelRegistryDataset,
    ReadOnlyDataset,
    SourceVersionDataset,
    TrainingReporterDataset,
)

__all__ = [
    "GeneratorDataset",
    "ImageFolderDataset",
    "ModelRegistryDataset",
    "ReadOnlyDataset",
    "SourceVersionDataset",
    "TorchDataset",
    "TrainingReporterDataset",
    "TrainingStateDataset",
]
