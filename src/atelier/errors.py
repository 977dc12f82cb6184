"""Project exceptions that callers need to tell apart.

Each message says what is wrong and what to do about it.
"""


class AtelierError(Exception):
    """Base class for Atelier's own errors."""


class DataSourceError(AtelierError):
    """The image source is missing, empty, or unsafe to read."""


class UnsafeArchiveError(DataSourceError):
    """An archive holds entries that would land outside the extraction folder."""


class CheckpointMismatchError(AtelierError):
    """A checkpoint was written with different model parameters than this run's."""


class TrainingDivergedError(AtelierError):
    """A loss became non-finite; training stopped and the last good checkpoint was kept."""


class InceptionWeightsNotFoundError(AtelierError):
    """The FID Inception weights are neither in the torch hub cache nor at the configured path."""
