"""The one scoring recipe: images (of a generator, or any uint8 batches) against reference
images, with the settings of one :class:`~atelier.core.metrics.config.EvaluationConfig`.

Every score in Atelier is computed here: model selection during training
(:class:`GeneratorScorer`), the evaluation and the champion beside it
(:func:`score_generator`, :func:`score_beside`), the per-class scores of a
class-conditional generator (:func:`score_classes`), the benchmarks. The recipe:

1. the reference images' Inception statistics (mean, covariance, features), from the
   cache (:mod:`.cache`, keyed by the images' content, resolution, dims and weights) when
   it holds them;
2. one Inception pass over the generated images (:func:`~.features.extract_features`),
   with the classifier logits only when the Inception Score is wanted;
3. :func:`score_features`: FID (:mod:`.fid`), KID (:mod:`.kid`) and IS
   (:mod:`.inception_score`) from those arrays.

A generator's images come from fixed seeds (the evaluation's ``config.seeds()``, or model
selection's from :data:`~.config.SELECTION_SEED_OFFSET` on), one image per seed, so two
scores of one generator on the same seeds compare weights, not noise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from atelier.core.generate import generate_batches
from atelier.core.metrics.cache import ReferenceStatistics, reference_statistics_of_images
from atelier.core.metrics.config import SELECTION_SEED_OFFSET, EvaluationConfig
from atelier.core.metrics.features import InceptionFeatures, extract_features
from atelier.core.metrics.fid import compute_fid, feature_statistics
from atelier.core.metrics.inception import FIDInception, load_evaluation_inception
from atelier.core.metrics.inception_score import compute_inception_score
from atelier.core.metrics.kid import compute_kid
from atelier.core.shards import ShardedImages

logger = logging.getLogger(__name__)

#: The scores every evaluation reports, under these names everywhere: metrics.json, the
#: MLflow run's metrics, the registered version's tags, the model card.
SCORE_NAMES = ("fid", "inception_score", "inception_score_std", "kid", "kid_std")

# A class is scored on its own (``per_class``) only with at least this many reference
# images: below it, its FID and KID say more about the handful of images than the generator.
PER_CLASS_MIN_REFERENCE = 10
# Images generated per class for ``per_class``, at the least.
PER_CLASS_MIN_SAMPLES = 10


def reference_statistics(reference: torch.Tensor | ReferenceStatistics, inception: FIDInception,
                         config: EvaluationConfig) -> ReferenceStatistics:
    """``reference``'s statistics: as given, or computed from (or read from the cache for)
    a uint8 ``N x C x H x W`` tensor at ``config.fid_dims``."""
    if isinstance(reference, ReferenceStatistics):
        return reference
    if len(reference) < 2:
        raise ValueError(f"Scoring needs at least 2 reference images, got {len(reference)}.")
    return reference_statistics_of_images(inception, reference, config.fid_dims,
                                          config.batch_size, config.reference_cache_dir)


def score_features(samples: InceptionFeatures, reference: ReferenceStatistics,
                   config: EvaluationConfig,
                   sample_statistics: tuple[np.ndarray, np.ndarray] | None = None,
                   ) -> dict[str, float]:
    """FID and KID (with its std) of ``samples`` against ``reference``, and the Inception
    Score (with its std) when ``samples`` carries logits. ``sample_statistics``: their mean
    and covariance when already known (a group's reduced sums), else computed here."""
    mu, sigma = sample_statistics or feature_statistics(samples.features)
    scores = {"fid": compute_fid(mu, sigma, reference.mu, reference.sigma)}
    scores["kid"], scores["kid_std"] = compute_kid(samples.features, reference.features,
                                                   config.kid_subsets, config.kid_subset_size)
    if samples.logits is not None:
        scores["inception_score"], scores["inception_score_std"] = compute_inception_score(
            samples.logits, config.is_splits)
    return scores


def score_batches(batches: Iterable[torch.Tensor], reference: torch.Tensor | ReferenceStatistics,
                  inception: FIDInception, config: EvaluationConfig, *, total: int | None = None,
                  inception_score: bool = True, description: str = "generated") -> dict:
    """Score uint8 image ``batches`` (e.g. generated on the fly on the GPU) against
    ``reference`` images: the scores of :func:`score_features` (all of
    :data:`SCORE_NAMES` with ``inception_score``, else ``fid``, ``kid``, ``kid_std``), and
    ``num_samples``, ``num_reference``, ``dims``, ``inception_weights_sha256`` and
    ``inception_weights_warning`` (None for the official weights)."""
    statistics = reference_statistics(reference, inception, config)
    samples = extract_features(inception, batches, dims=config.fid_dims, logits=inception_score,
                               total=total, description=f"Inception features ({description})")
    return {
        **score_features(samples, statistics, config),
        "num_samples": len(samples.features),
        "num_reference": len(statistics.features),
        "dims": config.fid_dims,
        "inception_weights_sha256": inception.weights.sha256,
        "inception_weights_warning": inception.weights.warning,
    }


@torch.no_grad()
def score_generator(generator: nn.Module, reference: torch.Tensor | ReferenceStatistics,
                    inception: FIDInception, config: EvaluationConfig, *,
                    seeds: Sequence[int] | None = None, labels: Sequence[int] | None = None,
                    inception_score: bool = True, description: str = "generated",
                    where: str = "inception") -> dict:
    """:func:`score_batches` of ``generator``'s images from ``seeds`` (the evaluation's
    ``config.seeds()`` by default), generated in eval mode in batches of
    ``config.batch_size``: on the Inception's device (``where="inception"``, the generator
    is moved there) or on the generator's own (``"generator"``, as model selection does
    mid-training). ``labels``: one class per seed for a class-conditional generator
    (default: :func:`~atelier.core.generate.cycled_labels`)."""
    seeds = config.seeds() if seeds is None else seeds
    if where == "inception":
        device = next(inception.parameters()).device
        generator = generator.to(device)
    else:
        device = next(generator.parameters()).device
    batches = generate_batches(generator, seeds, config.batch_size, device, labels=labels)
    return score_batches(batches, reference, inception, config, total=len(seeds),
                         inception_score=inception_score, description=description)


def incompatibility(generator: nn.Module, reference: torch.Tensor) -> str | None:
    """Why ``generator``'s images cannot be compared with ``reference``, or None."""
    makes = (generator.channels, generator.resolution, generator.resolution)
    if makes != tuple(reference.shape[1:]):
        return (f"it makes {makes} images (channels, height, width), the reference images are "
                f"{tuple(reference.shape[1:])}")
    return None


def score_beside(version: str, generator: nn.Module, reference: torch.Tensor,
                 inception: FIDInception, config: EvaluationConfig, *,
                 score: Callable[..., dict] = score_generator) -> dict:
    """Another generator (a registered ``version``) scored exactly as the candidate is
    (``score``: :func:`score_generator`, or its group form; the same seeds):
    ``{"version", <SCORE_NAMES>}``, or ``{"version", "incompatible"}`` when its images
    cannot be compared with ``reference``."""
    problem = incompatibility(generator, reference)
    if problem:
        return {"version": version, "incompatible": problem}
    scores = score(generator, reference, inception, config)
    return {"version": version, **{key: scores[key] for key in SCORE_NAMES}}


def score_classes(generator: nn.Module, class_names: Sequence[str], reference: torch.Tensor,
                  reference_labels: torch.Tensor, reference_classes: Sequence[str],
                  inception: FIDInception, config: EvaluationConfig) -> dict:
    """FID and KID of a class-conditional ``generator``, class by class.

    Each class's ``reference`` images (matched by class *name*: ``reference_labels`` index
    ``reference_classes``, the generator's label ``i`` is ``class_names[i]``, so the data's
    class order need not be the generator's) are scored against
    ``max(config.num_samples // len(class_names),`` :data:`PER_CLASS_MIN_SAMPLES` ``)``
    images generated with that class from the evaluation's seeds. Classes with fewer than
    :data:`PER_CLASS_MIN_REFERENCE` reference images are left out (and logged). Few images
    per class make these FIDs biased upwards: compare them with each other and across runs
    of the same settings, not with the overall FID.

    Returns:
        ``{class_name: {"fid": float, "kid": float, "num_reference": int}}``.
    """
    seeds = config.seeds(max(config.num_samples // len(class_names), PER_CLASS_MIN_SAMPLES))
    reference_classes = list(reference_classes)
    scores, skipped = {}, []
    for label, name in enumerate(class_names):
        real = (reference[reference_labels == reference_classes.index(name)]
                if name in reference_classes else reference[:0])
        if len(real) < PER_CLASS_MIN_REFERENCE:
            skipped.append(f"{name} ({len(real)})")
            continue
        result = score_generator(generator, real, inception, config, seeds=seeds,
                                 labels=[label] * len(seeds), inception_score=False,
                                 description=f"class {name}")
        scores[name] = {"fid": result["fid"], "kid": result["kid"], "num_reference": len(real)}
    if skipped:
        logger.info("No per-class scores for classes with fewer than %d reference images: %s.",
                    PER_CLASS_MIN_REFERENCE, ", ".join(skipped))
    return scores


def selection_reference(images: torch.Tensor | ShardedImages, count: int) -> torch.Tensor:
    """The training images model selection scores against: ``count`` of ``images`` (a
    tensor, or a sharded split: the same rows are read from its shards; all when there are
    fewer), evenly spaced through them, so the same data always gives the
    same reference (and its cached statistics) while the Inception pass over it stays as
    cheap as the samples' (``training.eval_samples``)."""
    if count < 2 or len(images) < 2:
        raise ValueError(f"Model selection needs at least 2 training images and "
                         f"training.eval_samples >= 2; got {len(images)} images, {count}.")
    if len(images) <= count:
        return images.load() if isinstance(images, ShardedImages) else images
    rows = torch.linspace(0, len(images) - 1, count).round().long()
    return images.take(rows) if isinstance(images, ShardedImages) else images[rows]


class GeneratorScorer:
    """Model selection's scorer: ``scorer(generator) -> {"fid", "kid"}`` of ``num_samples``
    images from seeds :data:`~.config.SELECTION_SEED_OFFSET` on, against ``reference``
    images (for model selection, training images: :meth:`for_selection`), computed
    as :func:`score_generator` computes them, without the Inception Score. The reference
    statistics are computed (or read from the cache) once, here."""

    def __init__(self, inception: FIDInception, reference: torch.Tensor, config: EvaluationConfig,
                 *, num_samples: int, seed_offset: int = SELECTION_SEED_OFFSET) -> None:
        if num_samples < 2:
            raise ValueError(f"Scoring a generator needs at least 2 samples, got {num_samples}.")
        self.inception, self.config = inception, config
        self.seeds = range(seed_offset, seed_offset + num_samples)
        self.reference = reference_statistics(reference, inception, config)

    @classmethod
    def for_selection(cls, config: EvaluationConfig, training_images: torch.Tensor | ShardedImages,
                      num_samples: int) -> GeneratorScorer:
        """The scorer model selection uses (``atelier.core.training.selection``):
        ``num_samples`` images from the selection seeds against
        :func:`selection_reference` of the ``training_images``, with ``config``'s Inception
        weights, device, dims, batch size, KID subsets and cache."""
        return cls(load_evaluation_inception(config),
                   selection_reference(training_images, num_samples), config,
                   num_samples=num_samples)

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        scores = score_generator(generator, self.reference, self.inception, self.config,
                                 seeds=self.seeds, inception_score=False,
                                 description="model selection", where="generator")
        return {"fid": scores["fid"], "kid": scores["kid"]}
