"""The tracking adapter: the code that talks to MLflow (and reads git and DVC state); the
one other writer to MLflow is the lineage hook (``atelier.hooks.lineage``), which records
what this package computes on the active run.

``src/atelier`` has three floors: ``core/`` (the torch library), ``pipelines/`` (Kedro
glue: pure nodes and their wiring), and this package. Pipelines use only the names
exported here; the catalog names the datasets; ``settings.py`` registers the hooks.

- :mod:`~atelier.tracking.lineage`: git and DVC versions of the checkout, hashes.
- :mod:`~atelier.tracking.reporter`: live training curves and sample grids.
- :mod:`~atelier.tracking.registry`: the pyfunc model's logging and registration, and the
  registry (``ModelRegistry``: the champion to score side by side). The catalog types
  that hand these to nodes are ``atelier.datasets``'.
- :mod:`~atelier.tracking.parents`: the model a fine-tune starts from
  (``training.init_from``, ``ModelRegistry.parent``) and its lineage tags.
- :mod:`~atelier.tracking.promotion`: the side-by-side promotion rule under a server lock.
- :mod:`~atelier.tracking.model`: the pyfunc model that serves a generator.
- :mod:`~atelier.tracking.reproduce`: ``python -m atelier.reproduce RUN_ID``.
- :mod:`~atelier.tracking.datasets`: the run's images as MLflow datasets.
- :mod:`~atelier.tracking.versions`: the registered versions and aliases, loaded for
  drawing (``RegisteredVersions``, ``connect_registry``: the gallery's reader).
- :mod:`~atelier.tracking.store`: which tracking store to read outside a run
  (``configured_store``: the gallery, ``atelier export``, reproduce, ``make mlflow-ui``),
  and ``ensure_experiment`` (the run's experiment, created race-free).
- :mod:`~atelier.tracking.export`: the generator a model URI names (``atelier export
  onnx``), and the ONNX file the registration logs beside the pyfunc model
  (``registration.onnx``).
"""

from atelier.tracking.datasets import log_image_datasets
from atelier.tracking.lineage import LINEAGE_TAGS, dvc_versions, git_state, lineage_tags
from atelier.tracking.parents import fine_tuned_from, parent_tags, resolve_parent
from atelier.tracking.promotion import verdict
from atelier.tracking.registry import (
    ModelRegistry,
    RegisteredGenerator,
    register_generator_version,
)
from atelier.tracking.reporter import TrainingReporter
from atelier.tracking.reproduce import REPRODUCES_ENV
from atelier.tracking.store import TrackingStore, configured_store, ensure_experiment
from atelier.tracking.versions import LoadedVersion, RegisteredVersions, connect_registry

__all__ = [
    "TrackingStore",
    "configured_store",
    "LINEAGE_TAGS",
    "REPRODUCES_ENV",
    "LoadedVersion",
    "ModelRegistry",
    "RegisteredGenerator",
    "RegisteredVersions",
    "TrainingReporter",
    "connect_registry",
    "dvc_versions",
    "ensure_experiment",
    "fine_tuned_from",
    "git_state",
    "lineage_tags",
    "log_image_datasets",
    "parent_tags",
    "register_generator_version",
    "resolve_parent",
    "verdict",
]
