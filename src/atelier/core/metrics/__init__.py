"""Inception features, FID, Inception Score and KID, with cached reference statistics.

One network, two steps, as in stylegan2-ada-pytorch's ``metrics/`` and torch-fidelity:

1. **Features** (:mod:`.features`). :func:`extract_features` runs pytorch-fid's FID Inception
   (``InceptionV3`` with ``use_fid_inception=True``: TensorFlow's 2015-12-05 Inception ported
   by pytorch-fid, file ``pt_inception-2015-12-05-6726825d.pth``; :mod:`.inception`) once over
   a stream of uint8 batches and returns the pooled features at the chosen dims (64, 192,
   768 or 2048, pytorch-fid's four blocks) and, in the same pass, the 1008-way logits.
2. **Statistics.** :func:`compute_fid` (:mod:`.fid`), :func:`compute_inception_score`
   (:mod:`.inception_score`) and :func:`compute_kid` (:mod:`.kid`) work on those arrays only.

The scoring recipe built from them is written once, in :mod:`.scoring`
(:func:`score_generator`, :func:`score_batches`, :func:`score_features`, model selection's
:class:`GeneratorScorer`, :func:`score_classes`), with the settings of one validated
:class:`EvaluationConfig` (:mod:`.config`, ``params:evaluation``).

Inception sees exactly what pytorch-fid feeds it: uint8 -> float ``x / 255`` (torchvision's
``ToTensor``), grayscale repeated to RGB (PIL's ``convert('RGB')``), then, inside the
network, a bilinear resize to 299 x 299 (``align_corners=False``) and ``2x - 1``. So FID
between two folders (:mod:`.folders`) equals ``python -m pytorch_fid DIR_A DIR_B`` (tested
to 1e-3 relative).

The weights come from the torch hub cache under ``TORCH_HOME``, where pytorch-fid puts
them, or from an explicit path; nothing else is ever loaded. Every result names the
weights' sha256; weights that are not the official file (whose sha256 starts with
``6726825d``) make every result carry a loud "not comparable" warning.

Reference statistics (the real images' mean, covariance and features) are cached on disk
under a key naming everything they depend on: the reference images' content hash, their
resolution, the feature dims and the weights' sha256. Callers ask for metrics; the cache
(:mod:`.cache`) is an internal detail of the scoring functions and
:func:`compute_fid_between_folders`.

Command line (comparable to ``python -m pytorch_fid``; :mod:`.cli`)::

    python -m atelier.core.metrics fid DIR_A DIR_B [--dims D] [--batch-size B] [--device DEV]
    python -m atelier.core.metrics is DIR [--splits N]
"""

from atelier.core.metrics.cache import ReferenceStatistics, reference_statistics_of_images
from atelier.core.metrics.cli import main
from atelier.core.metrics.config import SELECTION_SEED_OFFSET, EvaluationConfig
from atelier.core.metrics.distributed import (
    FeatureSums,
    distributed_features,
    distributed_reference_statistics,
    distributed_score_generator,
)
from atelier.core.metrics.features import InceptionFeatures, extract_features
from atelier.core.metrics.fid import compute_fid, feature_statistics
from atelier.core.metrics.folders import (
    compute_fid_between_folders,
    compute_inception_score_of_folder,
    list_image_files,
)
from atelier.core.metrics.inception import (
    DOWNLOAD_TIMEOUT_S,
    OFFICIAL_WEIGHTS_SHA256_PREFIX,
    WEIGHT_SETTINGS,
    WEIGHTS_FILENAME,
    FIDInception,
    InceptionWeights,
    hub_weights_path,
    load_evaluation_inception,
    load_inception,
    resolve_device,
    resolve_inception_weights,
)
from atelier.core.metrics.inception_score import compute_inception_score
from atelier.core.metrics.jobs import ScoringJob, score_generator_on_group
from atelier.core.metrics.kid import compute_kid
from atelier.core.metrics.network import FID_DIMS, NUM_CLASSES, build_fid_inception_network
from atelier.core.metrics.scoring import (
    PER_CLASS_MIN_REFERENCE,
    PER_CLASS_MIN_SAMPLES,
    SCORE_NAMES,
    GeneratorScorer,
    incompatibility,
    reference_statistics,
    score_batches,
    score_beside,
    score_classes,
    score_features,
    score_generator,
    selection_reference,
)

__all__ = [
    "FeatureSums",
    "ScoringJob",
    "score_generator_on_group",
    "distributed_features",
    "distributed_reference_statistics",
    "distributed_score_generator",
    "DOWNLOAD_TIMEOUT_S",
    "FID_DIMS",
    "NUM_CLASSES",
    "OFFICIAL_WEIGHTS_SHA256_PREFIX",
    "PER_CLASS_MIN_REFERENCE",
    "PER_CLASS_MIN_SAMPLES",
    "SCORE_NAMES",
    "SELECTION_SEED_OFFSET",
    "WEIGHT_SETTINGS",
    "WEIGHTS_FILENAME",
    "EvaluationConfig",
    "FIDInception",
    "GeneratorScorer",
    "InceptionFeatures",
    "InceptionWeights",
    "ReferenceStatistics",
    "build_fid_inception_network",
    "compute_fid",
    "compute_fid_between_folders",
    "compute_inception_score",
    "compute_inception_score_of_folder",
    "compute_kid",
    "extract_features",
    "feature_statistics",
    "hub_weights_path",
    "incompatibility",
    "list_image_files",
    "load_evaluation_inception",
    "load_inception",
    "main",
    "reference_statistics",
    "reference_statistics_of_images",
    "resolve_device",
    "resolve_inception_weights",
    "score_batches",
    "score_beside",
    "score_classes",
    "score_features",
    "score_generator",
    "selection_reference",
]
