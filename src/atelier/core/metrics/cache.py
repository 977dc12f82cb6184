"""Reference statistics (the real images' FID mean and covariance, and KID features),
cached on disk under a key naming everything they depend on.

The key holds the reference images' content hash, their resolution, the feature dims and
the weights' sha256 (and :data:`_CACHE_FORMAT`); the file name holds the resolution, the
dims and a hash of the key, and the file repeats the key, so a stale file is never reused.
Callers ask for statistics and get them; whether they came from the cache is only reported
(``cache_hit``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from atelier.core.metrics.features import extract_features
from atelier.core.metrics.fid import feature_statistics
from atelier.core.metrics.inception import FIDInception
from atelier.core.storage import write_atomically

logger = logging.getLogger(__name__)

# Bumped when the cached file's contents change meaning.
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class ReferenceStatistics:
    """The real images' FID statistics and KID features, and whether they came from the cache."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    cache_hit: bool = False


# --- content hashes -----------------------------------------------------------------------


def _tensor_content_hash(images: torch.Tensor) -> str:
    digest = hashlib.sha256(f"{images.dtype}{tuple(images.shape)}".encode())
    digest.update(memoryview(images.contiguous().cpu().numpy()).cast("B"))
    return digest.hexdigest()


def _files_content_hash(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


# --- the cache file -----------------------------------------------------------------------


def _cache_file(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir / f"reference-{key['resolution']}-{key['dims']}d-{digest}.npz"


def _read_cache(path: Path, key: dict) -> ReferenceStatistics | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if json.loads(str(stored["key"])) != key:
                return None
            return ReferenceStatistics(stored["mu"], stored["sigma"],
                                       stored["features"].astype(np.float64), cache_hit=True)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("Ignoring unreadable reference statistics %s (%s); recomputing.", path,
                       error)
        return None


def _write_cache(path: Path, key: dict, statistics: ReferenceStatistics) -> None:
    write_atomically(path, lambda handle: np.savez(
        handle, key=np.array(json.dumps(key, sort_keys=True)), mu=statistics.mu,
        sigma=statistics.sigma,
        # Inception's outputs are float32: storing them so loses nothing.
        features=statistics.features.astype(np.float32)))


def cache_key(inception: FIDInception, *, data_hash: str, resolution: str, dims: int) -> dict:
    """What a cached file's statistics depend on: the images' content hash, their
    resolution (``"<H>x<W>px"``), the feature dims and the Inception weights."""
    return {"format": _CACHE_FORMAT, "data_sha256": data_hash, "resolution": resolution,
            "dims": dims, "weights_sha256": inception.weights.sha256}


def images_cache_key(inception: FIDInception, images: torch.Tensor, dims: int) -> dict:
    """:func:`cache_key` of a uint8 ``N x C x H x W`` tensor (its bytes, its size)."""
    return cache_key(inception, data_hash=_tensor_content_hash(images),
                     resolution=f"{images.shape[-2]}x{images.shape[-1]}px", dims=dims)


def _reference_statistics(inception: FIDInception, batches: Iterable[torch.Tensor], *,
                          key: dict, count: int,
                          cache_dir: str | os.PathLike | None) -> ReferenceStatistics:
    dims = key["dims"]
    path = _cache_file(Path(cache_dir), key) if cache_dir is not None else None
    if path is not None and (cached := _read_cache(path, key)) is not None:
        logger.info("Reference statistics reused from %s (%d images, %d dims): no Inception pass "
                    "over the reference images.", path, len(cached.features), dims)
        return cached
    features = extract_features(inception, batches, dims=dims, total=count,
                                description="Inception features (reference)").features
    statistics = ReferenceStatistics(*feature_statistics(features), features)
    if path is not None:
        _write_cache(path, key, statistics)
        logger.info("Reference statistics computed for %d images (%d dims) and cached in %s.",
                    count, dims, path)
    return statistics


# --- what callers ask for -------------------------------------------------------------------


def reference_statistics_of_images(
    inception: FIDInception, images: torch.Tensor, dims: int = 2048, batch_size: int = 50,
    cache_dir: str | os.PathLike | None = None,
) -> ReferenceStatistics:
    """FID statistics and KID features of a uint8 tensor N x C x H x W, from the cache when
    ``cache_dir`` holds them for the same content, resolution, dims and weights."""
    return _reference_statistics(inception, images.split(batch_size),
                                 key=images_cache_key(inception, images, dims), count=len(images),
                                 cache_dir=cache_dir)


def reference_statistics_of_files(
    inception: FIDInception, files: Sequence[Path], batches: Iterable[torch.Tensor], *,
    resolution: str, dims: int = 2048, cache_dir: str | os.PathLike | None = None,
) -> ReferenceStatistics:
    """FID statistics and KID features of image ``files``, read as the uint8 ``batches``
    (consumed only on a cache miss), from the cache when ``cache_dir`` holds them for the
    same files' names and bytes, ``resolution`` (``"<H>x<W>px"``), dims and weights."""
    key = cache_key(inception, data_hash=_files_content_hash(files), resolution=resolution,
                    dims=dims)
    return _reference_statistics(inception, batches, key=key, count=len(files),
                                 cache_dir=cache_dir)
