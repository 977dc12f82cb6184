"""Scores of generators against reference images: the evaluation's, side by side, and the
quick ones of model selection during training.

:func:`score_generator` is the evaluation (FID, IS, KID of ``evaluation.num_samples``
images from fixed seeds); :func:`score_beside` scores another generator (the champion)
the same way, or says why it cannot be scored on these images. :class:`GeneratorScorer`
computes the reference statistics once (from the cache when they
are there), then, for each generator it is called with, generates ``num_samples`` images
from fixed seeds and returns its FID and KID against them: the same seeds every time, so
scores at different steps compare the weights, not the noise.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from atelier.core.generate import generate_batches
from atelier.core.metrics.cache import reference_statistics_of_images
from atelier.core.metrics.features import extract_features
from atelier.core.metrics.fid import compute_fid, feature_statistics
from atelier.core.metrics.inception import FIDInception, load_evaluation_inception
from atelier.core.metrics.kid import compute_kid

#: The scores every evaluation reports, under these names everywhere: metrics.json, the
#: MLflow run's metrics, the registered version's tags, the model card.
SCORE_NAMES = ("fid", "inception_score", "inception_score_std", "kid", "kid_std")


class GeneratorScorer:
    """``scorer(generator) -> {"fid": float, "kid": float}`` against ``reference`` images."""

    def __init__(self, inception: FIDInception, reference: torch.Tensor, *, num_samples: int,
                 dims: int = 2048, seed_offset: int = 0, batch_size: int = 50,
                 kid_subsets: int = 100, kid_subset_size: int = 1000,
                 cache_dir: str | os.PathLike | None = None) -> None:
        if num_samples < 2:
            raise ValueError(f"Scoring a generator needs at least 2 samples, got {num_samples}.")
        self.inception, self.dims, self.batch_size = inception, dims, batch_size
        self.seeds = range(seed_offset, seed_offset + num_samples)
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.reference = reference_statistics_of_images(inception, reference, dims, batch_size,
                                                        cache_dir)

    @torch.no_grad()
    def __call__(self, generator: nn.Module) -> dict[str, float]:
        device = next(generator.parameters()).device
        batches = generate_batches(generator, self.seeds, self.batch_size, device)
        features = extract_features(self.inception, batches, dims=self.dims, total=len(self.seeds),
                                    description="Inception features (model selection)").features
        fid = compute_fid(*feature_statistics(features), self.reference.mu, self.reference.sigma)
        kid, _ = compute_kid(features, self.reference.features, self.kid_subsets,
                             self.kid_subset_size)
        return {"fid": fid, "kid": kid}

    @classmethod
    def from_evaluation_params(cls, evaluation: dict, reference: torch.Tensor,
                               num_samples: int) -> GeneratorScorer:
        """A scorer configured like the evaluation (``params:evaluation``): its Inception
        weights, device, ``fid_dims``, seeds, batch size, KID subsets and cache."""
        if len(reference) < 2:
            raise ValueError("Scoring during training needs at least 2 validation images; raise "
                             "preprocessing.val_fraction or set training.eval_every=0.")
        return cls(load_evaluation_inception(evaluation), reference, num_samples=num_samples,
                   dims=evaluation["fid_dims"], seed_offset=evaluation["seed_offset"],
                   batch_size=evaluation["batch_size"], kid_subsets=evaluation["kid_subsets"],
                   kid_subset_size=evaluation["kid_subset_size"],
                   cache_dir=evaluation["reference_cache_dir"])


def score_generator(generator: nn.Module, reference: torch.Tensor, inception: FIDInception,
                    evaluation: dict) -> dict:
    """FID, IS and KID (:func:`atelier.core.metrics.compute_metrics`) of ``evaluation``'s
    ``num_samples`` images from seeds ``seed_offset, seed_offset + 1, ...`` against
    ``reference``, with its ``fid_dims``, IS splits, KID subsets and reference cache."""
    from atelier.core.metrics import compute_metrics

    seeds = range(evaluation["seed_offset"], evaluation["seed_offset"] + evaluation["num_samples"])
    device = next(inception.parameters()).device
    return compute_metrics(
        generate_batches(generator.to(device), seeds, evaluation["batch_size"], device), reference,
        inception, num_generated=len(seeds), dims=evaluation["fid_dims"],
        is_splits=evaluation["is_splits"], kid_subsets=evaluation["kid_subsets"],
        kid_subset_size=evaluation["kid_subset_size"], batch_size=evaluation["batch_size"],
        cache_dir=evaluation["reference_cache_dir"])


def incompatibility(generator: nn.Module, reference: torch.Tensor) -> str | None:
    """Why ``generator``'s images cannot be compared with ``reference``, or None."""
    makes = (generator.channels, generator.resolution, generator.resolution)
    if makes != tuple(reference.shape[1:]):
        return (f"it makes {makes} images (channels, height, width), the reference images are "
                f"{tuple(reference.shape[1:])}")
    return None


def score_beside(version: str, generator: nn.Module, reference: torch.Tensor,
                 inception: FIDInception, evaluation: dict) -> dict:
    """Another generator (a registered ``version``) scored exactly as :func:`score_generator`
    scores the candidate: ``{"version", <SCORE_NAMES>}``, or ``{"version", "incompatible"}``
    when its images cannot be compared with ``reference``."""
    problem = incompatibility(generator, reference)
    if problem:
        return {"version": version, "incompatible": problem}
    scores = score_generator(generator, reference, inception, evaluation)
    return {"version": version, **{key: scores[key] for key in SCORE_NAMES}}
