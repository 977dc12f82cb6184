"""The tracking adapter: the only code that talks to MLflow (and reads git and DVC state).

``src/atelier`` has three floors: ``core/`` (the torch library), ``pipelines/`` (Kedro
glue: pure nodes and their wiring), and this package. Pipelines use only the names
exported here; the catalog names the datasets; ``settings.py`` registers the hook.

- :mod:`~atelier.tracking.hooks`: ``LineageHook``, lineage and provenance tags on every run.
- :mod:`~atelier.tracking.lineage`: git and DVC versions (``SourceVersionDataset``), hashes.
- :mod:`~atelier.tracking.reporter`: live training curves and sample grids
  (``TrainingReporterDataset``).
- :mod:`~atelier.tracking.registry`: the pyfunc model's logging and registration, and the
  registry as a dataset (``ModelRegistryDataset``: the champion to score side by side).
- :mod:`~atelier.tracking.promotion`: the side-by-side promotion rule under a server lock.
- :mod:`~atelier.tracking.model`: the pyfunc model that serves a generator.
- :mod:`~atelier.tracking.reproduce`: ``python -m atelier.reproduce RUN_ID``.
- :mod:`~atelier.tracking.datasets`: the run's images as MLflow datasets.
- :mod:`~atelier.tracking.versions`: the registered versions and aliases, loaded for
  drawing (``RegisteredVersions``, ``connect_registry``: the gallery's reader).
- :mod:`~atelier.tracking.export`: the generator a model URI names (``atelier export
  onnx``), and the ONNX file the registration logs beside the pyfunc model
  (``registration.onnx``).
"""

from atelier.tracking.hooks import LineageHook
from atelier.tracking.lineage import SourceVersionDataset
from atelier.tracking.registry import (
    ModelRegistry,
    ModelRegistryDataset,
    RegisteredGenerator,
    register_generator_version,
)
from atelier.tracking.reporter import TrainingReporter, TrainingReporterDataset
from atelier.tracking.store import TrackingStore, configured_store
from atelier.tracking.versions import LoadedVersion, RegisteredVersions, connect_registry

__all__ = [
    "TrackingStore",
    "configured_store",
    "LineageHook",
    "LoadedVersion",
    "ModelRegistry",
    "ModelRegistryDataset",
    "RegisteredGenerator",
    "RegisteredVersions",
    "SourceVersionDataset",
    "TrainingReporter",
    "TrainingReporterDataset",
    "connect_registry",
    "register_generator_version",
]
