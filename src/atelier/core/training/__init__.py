"""GAN training: DCGAN on a uint8 image tensor, with AMP, EMA, checkpoints and DDP.

- ``config``: :class:`TrainingConfig`, the validated ``training:`` parameters, and
  ``WEIGHT_PARAMETERS`` (those a checkpoint must match to be resumed).
- ``loop``: :func:`train_gan`, the whole loop read top to bottom, with its losses, the
  :class:`Report` hook and :class:`TrainingResult`.
- ``runtime``: the policies the loop applies: device, precision, data placement,
  deterministic kernels, SIGTERM / SIGINT handling.
- ``checkpoints``: atomic checkpoint files, pruning, and the checkpoint a run resumes.
- ``distributed``: :func:`launch_training`, several processes on this machine.
- ``parent``: fine-tuning: :class:`TrainingState` (what every run keeps so a later run can
  start from it), :class:`ParentModel`, :func:`check_parent` and FreezeD.
- ``cli``: :func:`main`, the command line of ``python -m atelier.core.training``.

``train_gan`` runs in one process, or in each process of a ``torch.distributed`` group
(one rank per GPU, or per CPU process with gloo). Three ways to start it:

- in process: ``train_gan(images, TrainingConfig.from_params(params), data_hash=...)``;
- ``launch_training(...)`` (what the Kedro node calls): ``training.devices`` processes on
  this machine, the calling process being rank 0, so the ``report`` callback runs in it;
- ``torchrun`` on this package's command line, for several GPUs or machines::

    torchrun --nproc-per-node=8 -m atelier.core.training \\
        --data data/03_primary/images.pt --params conf/base/parameters_training.yml \\
        --output data/06_models/generator.pt [--set max_steps=20000 ...]

  Rank 0 writes the selected generator (model selection's best, else the EMA of the last
  step) to ``--output`` as a :class:`~atelier.core.models.GeneratorCheckpoint`
  (``load_generator`` reads it).

Checkpoints go to ``<training.checkpoint_dir>/<key>/``, the key being 16 hex digits of the
data hash, the image shape and every weight-shaping setting
(:meth:`TrainingConfig.checkpoint_key`), so new images or settings start a new run while a
reverted dataset finds its own checkpoints again.
"""

from atelier.core.training.cli import main
from atelier.core.training.config import WEIGHT_PARAMETERS, TrainingConfig
from atelier.core.training.distributed import launch_training
from atelier.core.training.loop import Report, TrainingResult, train_gan
from atelier.core.training.parent import (
    ParentModel,
    TrainingState,
    check_parent,
    describe_parent,
    merged_class_names,
)

__all__ = [
    "WEIGHT_PARAMETERS",
    "ParentModel",
    "Report",
    "TrainingConfig",
    "TrainingResult",
    "TrainingState",
    "check_parent",
    "describe_parent",
    "launch_training",
    "main",
    "merged_class_names",
    "train_gan",
]
