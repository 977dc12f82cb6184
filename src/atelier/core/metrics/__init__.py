"""Inception features, FID, Inception Score and KID, with cached reference statistics.

One network, two steps, as in stylegan2-ada-pytorch's ``metrics/`` and torch-fidelity:

1. **Features** (:mod:`.features`). :func:`extract_features` runs pytorch-fid's FID Inception
   (``InceptionV3`` with ``use_fid_inception=True``: TensorFlow's 2015-12-05 Inception ported
   by pytorch-fid, file ``pt_inception-2015-12-05-6726825d.pth``; :mod:`.inception`) once over
   a stream of uint8 batches and returns the pooled features at the chosen dims (64, 192,
   768 or 2048, pytorch-fid's four blocks) and, in the same pass, the 1008-way logits.
2. **Statistics.** :func:`compute_fid` (:mod:`.fid`), :func:`compute_inception_score`
   (:mod:`.inception_score`) and :func:`compute_kid` (:mod:`.kid`) work on those arrays only.

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
(:mod:`.cache`) is an internal detail of :func:`compute_metrics` and
:func:`compute_fid_between_folders`.

Command line (comparable to ``python -m pytorch_fid``; :mod:`.cli`)::

    python -m atelier.core.metrics fid DIR_A DIR_B [--dims D] [--batch-size B] [--device DEV]
    python -m atelier.core.metrics is DIR [--splits N]
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from atelier.core.metrics.cache import ReferenceStatistics, reference_statistics_of_images
from atelier.core.metrics.cli import main
from atelier.core.metrics.features import InceptionFeatures, extract_features
from atelier.core.metrics.fid import compute_fid, feature_statistics
from atelier.core.metrics.folders import (
    compute_fid_between_folders,
    compute_inception_score_of_folder,
    list_image_files,
)
from atelier.core.metrics.inception import (
    DOWNLOAD_TIMEOUT_S,
    FID_DIMS,
    NUM_CLASSES,
    OFFICIAL_WEIGHTS_SHA256_PREFIX,
    WEIGHT_SETTINGS,
    WEIGHTS_FILENAME,
    FIDInception,
    InceptionWeights,
    build_fid_inception_network,
    hub_weights_path,
    load_evaluation_inception,
    load_inception,
    resolve_device,
    resolve_inception_weights,
)
from atelier.core.metrics.inception_score import compute_inception_score
from atelier.core.metrics.kid import compute_kid
from atelier.core.metrics.scoring import (
    SCORE_NAMES,
    GeneratorScorer,
    incompatibility,
    score_beside,
    score_generator,
)

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "FID_DIMS",
    "NUM_CLASSES",
    "OFFICIAL_WEIGHTS_SHA256_PREFIX",
    "SCORE_NAMES",
    "WEIGHT_SETTINGS",
    "WEIGHTS_FILENAME",
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
    "compute_metrics",
    "incompatibility",
    "score_beside",
    "score_generator",
    "extract_features",
    "feature_statistics",
    "hub_weights_path",
    "list_image_files",
    "load_evaluation_inception",
    "load_inception",
    "main",
    "reference_statistics_of_images",
    "resolve_device",
    "resolve_inception_weights",
]


def compute_metrics(generated: Iterable[torch.Tensor], reference: torch.Tensor,
                    inception: FIDInception, *, num_generated: int | None = None,
                    dims: int = 2048, is_splits: int = 10, kid_subsets: int = 100,
                    kid_subset_size: int = 1000, batch_size: int = 50,
                    cache_dir: str | os.PathLike | None = None) -> dict:
    """FID, IS and KID of generated images against reference (real) images.

    ``generated``: uint8 batches (B x C x H x W), e.g. produced on the fly on the GPU;
    ``reference``: a uint8 tensor N x C x H x W, whose statistics are cached under
    ``cache_dir``. One Inception pass over the generated images serves all three metrics.
    Returns ``fid``, ``inception_score``, ``inception_score_std``, ``kid``, ``kid_std``,
    ``num_samples``, ``num_reference``, ``dims``, ``inception_weights_sha256`` and
    ``inception_weights_warning`` (None for the official weights).
    """
    reference_stats = reference_statistics_of_images(inception, reference, dims, batch_size,
                                                     cache_dir)
    samples = extract_features(inception, generated, dims=dims, logits=True, total=num_generated,
                               description="Inception features (generated)")
    fid = compute_fid(*feature_statistics(samples.features), reference_stats.mu,
                      reference_stats.sigma)
    inception_score, inception_score_std = compute_inception_score(samples.logits, is_splits)
    kid, kid_std = compute_kid(samples.features, reference_stats.features, kid_subsets,
                               kid_subset_size)
    scores = (fid, inception_score, inception_score_std, kid, kid_std)
    return {
        **dict(zip(SCORE_NAMES, scores, strict=True)),
        "num_samples": len(samples.features),
        "num_reference": len(reference_stats.features),
        "dims": dims,
        "inception_weights_sha256": inception.weights.sha256,
        "inception_weights_warning": inception.weights.warning,
    }
