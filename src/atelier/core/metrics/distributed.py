"""FID, Inception Score and KID computed by the ranks of a ``torch.distributed`` group
together, each rank running Inception over its share of the images only.

Every rank of the group calls the same function with the same arguments (the same seeds,
reference images and :class:`~.config.EvaluationConfig`); each returns the same result.
With no process group, or a group of one, each function is exactly the one-process path of
:mod:`.scoring` (:func:`~.scoring.score_generator`, :func:`~.scoring.reference_statistics`).

Who does which images. Rank ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...`` of the
global list (:func:`shard`: ``items[r::W]``), strided rather than in contiguous blocks:
a rank's share follows from ``(r, W)`` alone, without the global count (a range of seeds
stays a range), shares differ by at most one image, and the gathered rows go back in the
global order (:func:`interleave`) knowing only each rank's count.

How the ranks combine:

- FID: each rank sums its features in float64 (:class:`FeatureSums`: n, sum x, sum x x^T);
  the sums are all-reduced and give mean ``S1 / n`` and covariance ``(S2 - n mu mu^T) /
  (n - 1)``, ``np.cov(rowvar=False)``'s ddof 1, equal to ``np.mean`` and ``np.cov`` up to
  rounding (tested to 1e-9). The sums are also for a streaming caller, who can add batch
  after batch of a large reference set without keeping its features.
- KID and IS need the rows themselves: every rank's features (and logits) are gathered to
  every rank in the global order, so KID's subsets (drawn by index from a fixed seed) and
  IS's shuffle pick the same images as one process does.
- The scores are computed once, on the group's rank 0, and broadcast: every rank returns
  the same dict, bit for bit, so decisions taken on it agree.

An image's features depend only on its pixels and the network, so the scores equal one
process's up to the float32 differences of the network's kernels between batch sizes
(about 1e-6 on logits on a CPU; none with ``batch_size`` 1).

Backends: gloo (CPU) and NCCL (CUDA; each rank has called ``torch.cuda.set_device`` on its
GPU, where the collectives' tensors go). Errors a rank can see alone are raised on every
rank (bad dims, too few images, a failed score), so no rank waits for a collective that
will not come; a crash of one rank leaves the others waiting until the group's timeout.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from atelier.core.generate import cycled_labels, generate_batches
from atelier.core.metrics.cache import (
    ReferenceStatistics,
    _cache_file,
    _read_cache,
    _write_cache,
    images_cache_key,
)
from atelier.core.metrics.config import EvaluationConfig
from atelier.core.metrics.features import InceptionFeatures, extract_features
from atelier.core.metrics.fid import feature_statistics
from atelier.core.metrics.inception import FIDInception
from atelier.core.metrics.network import FID_DIMS, NUM_CLASSES
from atelier.core.metrics.scoring import reference_statistics, score_features, score_generator

logger = logging.getLogger(__name__)

# A list, range, tuple, tensor or array: anything sliced with a step.
Items = TypeVar("Items")


# --- the group, and who does which images --------------------------------------------------


def rank_and_world_size(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """This process's rank in ``group`` (the default group when None) and the group's size;
    ``(0, 1)`` when no process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def shard(items: Items, rank: int, world_size: int) -> Items:
    """Rank ``rank``'s share of ``items`` (a list, range, tuple, tensor or array):
    ``items[rank::world_size]``, the items ``rank, rank + world_size, ...``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
    return items[rank::world_size]


def interleave(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The rows of every rank's :func:`shard` back in the global order: ``parts[r]`` are
    rows ``r, r + W, ...`` of the result (``W = len(parts)``)."""
    world_size, total = len(parts), sum(len(part) for part in parts)
    for rank, part in enumerate(parts):
        if len(part) != len(range(rank, total, world_size)):
            raise ValueError(
                f"Rank {rank} holds {len(part)} of {total} rows, not its strided share "
                f"({len(range(rank, total, world_size))}): give each rank shard(items, rank, "
                f"{world_size}).")
    rows = np.empty((total, *parts[0].shape[1:]), dtype=np.result_type(*parts))
    for rank, part in enumerate(parts):
        rows[rank::world_size] = part
    return rows


def _collective_device(group: dist.ProcessGroup | None) -> torch.device:
    # NCCL reduces only CUDA tensors, on the GPU this rank has set as current.
    if dist.get_backend(group) == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _broadcast_from_first_rank(value: Any, group: dist.ProcessGroup | None) -> Any:
    # broadcast_object_list's src is a global rank (group_src only exists from torch 2.6).
    source = 0 if group is None else dist.get_global_rank(group, 0)
    box = [value]
    dist.broadcast_object_list(box, src=source, group=group)
    return box[0]


# --- FID statistics from float64 sums ---------------------------------------------------------


@dataclass
class FeatureSums:
    """Running float64 sums of feature rows: their ``count`` n, ``total`` (sum of x, dims)
    and ``cross`` (sum of x x^T, dims x dims), from which the FID statistics follow
    (:meth:`statistics`) without keeping the rows; sums of several ranks add up
    (:meth:`all_reduce`)."""

    count: int
    total: np.ndarray
    cross: np.ndarray

    @classmethod
    def zeros(cls, dims: int) -> FeatureSums:
        """Empty sums for ``dims``-dimensional features."""
        return cls(0, np.zeros(dims), np.zeros((dims, dims)))

    def add(self, features: np.ndarray) -> None:
        """Add feature rows (N x dims, e.g. one batch's) to the sums, in place."""
        rows = np.asarray(features, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.total):
            raise ValueError(f"Expected features N x {len(self.total)}, got {rows.shape}.")
        self.count += len(rows)
        self.total += rows.sum(axis=0)
        self.cross += rows.T @ rows

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> FeatureSums:
        """The sums over every rank of ``group`` (one float64 all-reduce); these sums
        themselves when there is no group."""
        if rank_and_world_size(group)[1] == 1:
            return FeatureSums(self.count, self.total.copy(), self.cross.copy())
        dims = len(self.total)
        # One tensor, one collective; float64 holds a count exactly up to 2^53.
        packed = torch.from_numpy(np.concatenate([[float(self.count)], self.total,
                                                  self.cross.ravel()]))
        packed = packed.to(_collective_device(group))
        dist.all_reduce(packed, group=group)
        values = packed.cpu().numpy()
        return FeatureSums(int(values[0]), values[1:dims + 1].copy(),
                           values[dims + 1:].reshape(dims, dims).copy())

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``S1 / n`` and covariance ``(S2 - n mu mu^T) / (n - 1)``: ``np.mean`` and
        ``np.cov(rowvar=False)`` (ddof 1) of the rows summed, as pytorch-fid's
        ``calculate_activation_statistics``. The subtraction loses about
        ``eps * |mu|^2 / variance`` of relative precision, negligible for Inception's
        features (tested to 1e-9 against ``np.cov``)."""
        if self.count < 2:
            raise ValueError("FID needs at least two images on each side (a covariance).")
        mu = self.total / self.count
        return mu, (self.cross - self.count * np.outer(mu, mu)) / (self.count - 1)


# --- one Inception pass, shared out ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GatheredFeatures(InceptionFeatures):
    """Every rank's Inception ``features`` (and ``logits``) in the global order, and their
    FID statistics ``mu`` and ``sigma``."""

    mu: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)


def _local_features(inception: FIDInception, batches: Iterable[torch.Tensor], dims: int,
                    logits: bool, total: int | None, description: str) -> InceptionFeatures:
    # A rank may have no images (fewer images than ranks): it still joins the collectives.
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return InceptionFeatures(np.zeros((0, dims)),
                                 np.zeros((0, NUM_CLASSES)) if logits else None)
    return extract_features(inception, itertools.chain([first], batches), dims=dims,
                            logits=logits, total=total, description=description)


def _all_gather_rows(rows: np.ndarray, counts: list[int], group: dist.ProcessGroup | None,
                     device: torch.device) -> np.ndarray:
    # all_gather needs one shape on every rank: pad to the largest share, then cut.
    padded = torch.zeros((max(counts), rows.shape[1]), dtype=torch.float64, device=device)
    padded[: len(rows)] = torch.from_numpy(rows).to(device)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    return interleave([part[:count].cpu().numpy()
                       for part, count in zip(parts, counts, strict=True)])


@torch.no_grad()
def distributed_features(inception: FIDInception, batches: Iterable[torch.Tensor], *,
                         dims: int = 2048, logits: bool = False, total: int | None = None,
                         description: str = "Inception features",
                         group: dist.ProcessGroup | None = None) -> GatheredFeatures:
    """Inception features (and logits) of every rank's uint8 ``batches``, on every rank.

    Each rank passes its own share of the images (:func:`shard` of the global list, in
    order; ``total`` is the share's size, for the progress bar) and runs Inception over it
    only (:func:`~.features.extract_features`). Returned on every rank: all ranks' features
    and logits, float64, gathered and put back in the global order, and ``mu``, ``sigma``
    from the all-reduced :class:`FeatureSums`. With no group (or a group of one): the
    features of ``extract_features`` and ``mu``, ``sigma`` of
    :func:`~.fid.feature_statistics`, exactly as one process computes them.
    """
    if dims not in FID_DIMS:
        raise ValueError(f"dims must be one of {FID_DIMS} (pytorch-fid's blocks), not {dims}.")
    world_size = rank_and_world_size(group)[1]
    local = _local_features(inception, batches, dims, logits, total, description)
    if world_size == 1:
        if not len(local.features):
            raise ValueError("No images to extract Inception features from.")
        mu, sigma = feature_statistics(local.features)
        return GatheredFeatures(local.features, local.logits, mu=mu, sigma=sigma)
    device = _collective_device(group)
    count = torch.tensor([len(local.features)], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count, group=group)
    counts = [int(rank_count) for rank_count in counts]
    if not sum(counts):
        raise ValueError("No images to extract Inception features from, on any rank.")
    sums = FeatureSums.zeros(dims)
    sums.add(local.features)
    mu, sigma = sums.all_reduce(group).statistics()
    return GatheredFeatures(
        _all_gather_rows(local.features, counts, group, device),
        _all_gather_rows(local.logits, counts, group, device) if logits else None,
        mu=mu, sigma=sigma)


# --- reference statistics, cached as one process caches them ---------------------------------


def distributed_reference_statistics(reference: torch.Tensor | ReferenceStatistics,
                                     inception: FIDInception, config: EvaluationConfig, *,
                                     group: dist.ProcessGroup | None = None,
                                     ) -> ReferenceStatistics:
    """``reference``'s statistics on every rank: as given, or for a uint8 ``N x C x H x W``
    tensor (the same on every rank) at ``config.fid_dims``, from the cache or computed by
    the ranks together.

    The cache (``config.reference_cache_dir``) is the one-process cache, under the same
    key (:mod:`.cache`): the group's rank 0 reads it and broadcasts what it found; on a miss
    every rank features its :func:`shard` of the images (:func:`distributed_features`) and
    rank 0 writes the result (a failed write is logged, not raised, so that the ranks stay
    in step). With no group (or a group of one): :func:`~.scoring.reference_statistics`.
    """
    if isinstance(reference, ReferenceStatistics):
        return reference
    rank, world_size = rank_and_world_size(group)
    if world_size == 1:
        return reference_statistics(reference, inception, config)
    if len(reference) < 2:
        raise ValueError(f"Scoring needs at least 2 reference images, got {len(reference)}.")
    dims, path, key = config.fid_dims, None, None
    if config.reference_cache_dir is not None:
        cached = None
        if rank == 0:
            key = images_cache_key(inception, reference, dims)
            path = _cache_file(Path(config.reference_cache_dir), key)
            cached = _read_cache(path, key)
        cached = _broadcast_from_first_rank(cached, group)
        if cached is not None:
            if rank == 0:
                logger.info("Reference statistics reused from %s (%d images, %d dims): no "
                            "Inception pass over the reference images.", path,
                            len(cached.features), dims)
            return cached
    share = shard(reference, rank, world_size)
    gathered = distributed_features(
        inception, share.split(config.batch_size), dims=dims, total=len(share), group=group,
        description=f"Inception features (reference, rank {rank} of {world_size})")
    statistics = ReferenceStatistics(gathered.mu, gathered.sigma, gathered.features)
    if path is not None:
        try:
            _write_cache(path, key, statistics)
            logger.info("Reference statistics computed for %d images (%d dims) by %d ranks and "
                        "cached in %s.", len(reference), dims, world_size, path)
        except OSError as error:
            logger.warning("Could not cache the reference statistics in %s (%s).", path, error)
    return statistics


# --- scores -------------------------------------------------------------------------------------


@torch.no_grad()
def distributed_score_generator(generator: nn.Module,
                                reference: torch.Tensor | ReferenceStatistics,
                                inception: FIDInception, config: EvaluationConfig, *,
                                seeds: Sequence[int] | None = None,
                                labels: Sequence[int] | None = None,
                                inception_score: bool = True, description: str = "generated",
                                where: str = "inception",
                                group: dist.ProcessGroup | None = None) -> dict:
    """:func:`~.scoring.score_generator` by the ranks of ``group`` together: the same dict
    (:data:`~.scoring.SCORE_NAMES`, ``num_samples``, ``num_reference``, ``dims``,
    ``inception_weights_sha256``, ``inception_weights_warning``) on every rank.

    Each rank generates and features only its :func:`shard` of ``seeds`` (the evaluation's
    ``config.seeds()`` by default) and of their ``labels`` (default:
    :func:`~atelier.core.generate.cycled_labels`, one class per seed); an image depends only
    on its seed, so the images are one process's. The reference statistics come from
    :func:`distributed_reference_statistics`. The group's rank 0 scores the gathered
    features (FID from the reduced sums) and broadcasts the scores. ``where``: as in
    ``score_generator``. With no group (or a group of one): ``score_generator`` itself.
    """
    rank, world_size = rank_and_world_size(group)
    if world_size == 1:
        return score_generator(generator, reference, inception, config, seeds=seeds,
                               labels=labels, inception_score=inception_score,
                               description=description, where=where)
    seeds = config.seeds() if seeds is None else seeds
    labels = cycled_labels(generator, seeds) if labels is None else labels
    if labels is not None and len(labels) != len(seeds):
        raise ValueError(f"Give one label per seed: {len(seeds)} seeds, {len(labels)} labels.")
    statistics = distributed_reference_statistics(reference, inception, config, group=group)
    if where == "inception":
        device = next(inception.parameters()).device
        generator = generator.to(device)
    else:
        device = next(generator.parameters()).device
    share = shard(seeds, rank, world_size)
    batches = generate_batches(generator, share, config.batch_size, device,
                               labels=None if labels is None else shard(labels, rank, world_size))
    samples = distributed_features(
        inception, batches, dims=config.fid_dims, logits=inception_score, total=len(share),
        description=f"Inception features ({description}, rank {rank} of {world_size})",
        group=group)
    result: dict | str | None = None
    failure: Exception | None = None
    if rank == 0:
        try:
            result = {
                **score_features(samples, statistics, config,
                                 sample_statistics=(samples.mu, samples.sigma)),
                "num_samples": len(samples.features),
                "num_reference": len(statistics.features),
                "dims": config.fid_dims,
                "inception_weights_sha256": inception.weights.sha256,
                "inception_weights_warning": inception.weights.warning,
            }
        except Exception as error:  # every rank must hear of it, or the others wait forever
            failure, result = error, f"{type(error).__name__}: {error}"
    result = _broadcast_from_first_rank(result, group)
    if failure is not None:
        raise failure
    if isinstance(result, str):
        raise RuntimeError(f"Scoring failed on the group's rank 0: {result}")
    return result

