"""Project exceptions that callers need to tell apart.

The torch library's own errors are defined in :mod:`atelier.core.errors` (``core`` imports
nothing outside itself) and re-exported here, so ``from atelier.errors import ...`` is the
one place callers look. Each message says what is wrong and what to do about it.
"""

from atelier.core.errors import (
    AtelierError,
    CheckpointMismatchError,
    CheckpointUnreadableError,
    DataSourceError,
    ExportError,
    ExportMismatchError,
    ExportTargetExistsError,
    GeneratorNotFoundError,
    GeneratorTooOldError,
    InceptionWeightsNotFoundError,
    ParentModelError,
    TrainingDivergedError,
    UnsafeArchiveError,
)


class ProjectBusyError(AtelierError):
    """Another ``kedro run`` holds this project folder (see :mod:`atelier.hooks.runlock`)."""


__all__ = [
    "AtelierError",
    "CheckpointMismatchError",
    "CheckpointUnreadableError",
    "DataSourceError",
    "ExportError",
    "ExportMismatchError",
    "ExportTargetExistsError",
    "GeneratorNotFoundError",
    "GeneratorTooOldError",
    "InceptionWeightsNotFoundError",
    "ParentModelError",
    "ProjectBusyError",
    "TrainingDivergedError",
    "UnsafeArchiveError",
]
