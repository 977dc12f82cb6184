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


class ParentModelError(AtelierError):
    """``training.init_from`` names no usable parent: nothing there, not a training state,
    or networks this run cannot start from (:mod:`atelier.core.training.parent`)."""


class InceptionWeightsNotFoundError(AtelierError):
    """The FID Inception weights are neither in the torch hub cache nor at the configured path."""


class GeneratorNotFoundError(AtelierError):
    """A model URI or generator file names no generator: no such file, registered model,
    version, alias or run, or one that holds no Atelier generator."""


class ExportError(AtelierError):
    """A generator cannot be exported as asked (:mod:`atelier.core.export`)."""


class ExportTargetExistsError(ExportError):
    """The export's output file exists already: pass ``force`` (``--force``) to replace it."""


class GeneratorTooOldError(ExportError):
    """A generator file lacks what the export needs (written by an older Atelier, or not by
    Atelier), or has configuration keys this Atelier does not know."""


class ExportMismatchError(ExportError):
    """The exported ONNX graph does not reproduce the PyTorch generator's images."""
