"""Errors raised by the torch library (``atelier.core``) that callers need to tell apart.

They live in ``core`` so that the library imports nothing outside itself; the project
re-exports them from :mod:`atelier.errors`. Each message says what is wrong and what to do.
"""


class AtelierError(Exception):
    """Base class for Atelier's own errors."""


class DataSourceError(AtelierError):
    """The image source is missing, empty, or unsafe to read."""


class UnsafeArchiveError(DataSourceError):
    """An archive holds entries that would land outside the extraction folder."""


class CheckpointMismatchError(AtelierError):
    """A checkpoint was written with different model parameters than this run's."""


class CheckpointUnreadableError(AtelierError):
    """A file is not a readable Atelier checkpoint (truncated, foreign, or not a checkpoint)."""


class TrainingDivergedError(AtelierError):
    """A loss became non-finite; training stopped and the last good checkpoint was kept."""


class InceptionWeightsNotFoundError(AtelierError):
    """The FID Inception weights are neither in the torch hub cache nor at the configured path."""
