"""Inception features, FID, Inception Score and KID, with cached reference statistics.

One network, two steps, as in stylegan2-ada-pytorch's ``metrics/`` and torch-fidelity:

1. **Features.** :func:`extract_features` runs pytorch-fid's FID Inception (``InceptionV3``
   with ``use_fid_inception=True``: TensorFlow's 2015-12-05 Inception ported by pytorch-fid,
   file ``pt_inception-2015-12-05-6726825d.pth``) once over a stream of uint8 batches and
   returns the pooled features at the chosen dims (64, 192, 768 or 2048, pytorch-fid's four
   blocks) and, in the same pass, the 1008-way logits.
2. **Statistics.** :func:`compute_fid`, :func:`compute_inception_score` and
   :func:`compute_kid` work on those arrays only.

Inception sees exactly what pytorch-fid feeds it: uint8 -> float ``x / 255`` (torchvision's
``ToTensor``), grayscale repeated to RGB (PIL's ``convert('RGB')``), then, inside the
network, a bilinear resize to 299 x 299 (``align_corners=False``) and ``2x - 1``. So FID
between two folders equals ``python -m pytorch_fid DIR_A DIR_B`` (tested to 1e-3 relative).

The weights come from the torch hub cache under ``TORCH_HOME``, where pytorch-fid puts
them, or from an explicit path; nothing else is ever loaded. Every result names the
weights' sha256; weights that are not the official file (whose sha256 starts with
``6726825d``) make every result carry a loud "not comparable" warning.

Reference statistics (the real images' mean, covariance and features) are cached on disk
under a key naming everything they depend on: the reference images' content hash, their
resolution, the feature dims and the weights' sha256. Callers ask for metrics; the cache
is an internal detail (:func:`compute_metrics` and :func:`compute_fid_between_folders`).

Command line (comparable to ``python -m pytorch_fid``)::

    python -m atelier.core.metrics fid DIR_A DIR_B [--dims D] [--batch-size B] [--device DEV]
    python -m atelier.core.metrics is DIR [--splits N]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from pytorch_fid.fid_score import IMAGE_EXTENSIONS
from pytorch_fid.inception import (
    FID_WEIGHTS_URL,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
    InceptionV3,
)
from scipy import linalg, special
from torch import nn
from tqdm.auto import tqdm

from atelier.core.storage import file_sha256, write_atomically
from atelier.errors import InceptionWeightsNotFoundError

logger = logging.getLogger(__name__)

WEIGHTS_FILENAME = Path(urlparse(FID_WEIGHTS_URL).path).name  # pt_inception-2015-12-05-6726825d.pth
# torch hub names files <name>-<first 8 hex digits of their sha256>.<ext>.
OFFICIAL_WEIGHTS_SHA256_PREFIX = "6726825d"
FID_DIMS = tuple(InceptionV3.BLOCK_INDEX_BY_DIM)  # (64, 192, 768, 2048)
NUM_CLASSES = 1008
# A failed download must not hang an offline machine: each socket operation of the one
# download attempt gives up after this many seconds.
DOWNLOAD_TIMEOUT_S = 30
# Bumped when the cached file's contents change meaning.
_CACHE_FORMAT = 1


# --- weights --------------------------------------------------------------------------


@dataclass(frozen=True)
class InceptionWeights:
    """The Inception weights file a result was computed with."""

    path: Path
    sha256: str

    @property
    def is_official(self) -> bool:
        return self.sha256.startswith(OFFICIAL_WEIGHTS_SHA256_PREFIX)

    @property
    def warning(self) -> str | None:
        """``None`` for the official file; otherwise the warning every result carries."""
        if self.is_official:
            return None
        return (
            f"STAND-IN Inception weights (sha256 {self.sha256[:16]}..., not pytorch-fid's "
            f"official {WEIGHTS_FILENAME}, whose sha256 starts with "
            f"{OFFICIAL_WEIGHTS_SHA256_PREFIX}): FID, IS and KID are NOT comparable with "
            "published figures or with runs scored with the official weights."
        )


def hub_weights_path() -> Path:
    """Where pytorch-fid (``torch.hub.load_state_dict_from_url``) keeps the weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def _missing_weights_message(reason: str) -> str:
    return (
        f"pytorch-fid's FID Inception weights ({WEIGHTS_FILENAME}) are not available: {reason}. "
        f"Either put the file in the torch hub cache at {hub_weights_path()} (that is "
        f"$TORCH_HOME/hub/checkpoints/; pytorch-fid downloads it there from {FID_WEIGHTS_URL} "
        "when the machine is online), or give its path explicitly: evaluation.inception_weights "
        "in conf/base/parameters_evaluation.yml (or --params), or --weights on the command line. "
        "Atelier never falls back to other weights. (For offline tests only, "
        "scripts/build_standin_inception.py writes a stand-in whose metrics are NOT comparable.)"
    )


def _download_weights(destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # Same URL and destination as pytorch-fid; the hash prefix also rejects a wrong file.
        torch.hub.download_url_to_file(
            FID_WEIGHTS_URL, str(destination), hash_prefix=OFFICIAL_WEIGHTS_SHA256_PREFIX
        )
    except Exception as error:  # URLError, timeouts, HTTP errors, a hash mismatch
        raise InceptionWeightsNotFoundError(
            _missing_weights_message(f"the file is not at {destination} and downloading it "
                                     f"failed ({error})")
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)


@functools.lru_cache(maxsize=8)
def _sha256_of_file(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key: a replaced file is hashed again.
    return file_sha256(path)


def resolve_inception_weights(path: str | os.PathLike | None = None,
                              download: bool = True) -> InceptionWeights:
    """Find the FID Inception weights file, or raise before any work is done.

    ``path`` given: that file, which must exist. ``path`` None: the torch hub cache, as
    pytorch-fid looks it up; when it is absent and ``download`` is true, one download
    attempt from pytorch-fid's URL (what pytorch-fid itself would do), and any failure of
    it becomes :class:`InceptionWeightsNotFoundError` naming the file and where it can go.
    """
    if path is not None:
        weights_path = Path(path).expanduser()
        if not weights_path.is_file():
            raise InceptionWeightsNotFoundError(
                _missing_weights_message(f"the configured file {weights_path} does not exist"))
    else:
        weights_path = hub_weights_path()
        if not weights_path.is_file():
            if not download:
                raise InceptionWeightsNotFoundError(
                    _missing_weights_message(f"no file at {weights_path}"))
            _download_weights(weights_path)
    stat = weights_path.stat()
    weights = InceptionWeights(
        weights_path.resolve(), _sha256_of_file(str(weights_path.resolve()), stat.st_size,
                                                stat.st_mtime_ns))
    if weights.warning:
        logger.warning("!!! %s File: %s", weights.warning, weights.path)
    return weights


# --- network --------------------------------------------------------------------------


def build_fid_inception_network() -> torchvision.models.Inception3:
    """pytorch-fid's ``fid_inception_v3()`` architecture (1008 classes), without its weights.

    The same patched blocks, in the same places, as ``pytorch_fid.inception.fid_inception_v3``;
    its state dict has exactly the keys of the FID weights file.
    """
    network = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=NUM_CLASSES, init_weights=False)
    network.Mixed_5b = FIDInceptionA(192, pool_features=32)
    network.Mixed_5c = FIDInceptionA(256, pool_features=64)
    network.Mixed_5d = FIDInceptionA(288, pool_features=64)
    network.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    network.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    network.Mixed_7b = FIDInceptionE_1(1280)
    network.Mixed_7c = FIDInceptionE_2(2048)
    return network


class FIDInception(nn.Module):
    """pytorch-fid's ``InceptionV3`` feature blocks plus the 1008-way classifier, in one pass.

    ``forward(images, dims, logits)`` takes float images in [0, 1] (N x 3 x H x W) and
    returns ``(features N x dims, logits N x 1008 or None)``. The blocks and the input
    handling are pytorch-fid's ``InceptionV3.forward``; ``weights`` names the file loaded.
    """

    def __init__(self, network: torchvision.models.Inception3, weights: InceptionWeights):
        super().__init__()
        self.weights = weights
        self.blocks = nn.ModuleList([
            nn.Sequential(network.Conv2d_1a_3x3, network.Conv2d_2a_3x3, network.Conv2d_2b_3x3,
                          nn.MaxPool2d(kernel_size=3, stride=2)),
            nn.Sequential(network.Conv2d_3b_1x1, network.Conv2d_4a_3x3,
                          nn.MaxPool2d(kernel_size=3, stride=2)),
            nn.Sequential(network.Mixed_5b, network.Mixed_5c, network.Mixed_5d, network.Mixed_6a,
                          network.Mixed_6b, network.Mixed_6c, network.Mixed_6d, network.Mixed_6e),
            nn.Sequential(network.Mixed_7a, network.Mixed_7b, network.Mixed_7c,
                          nn.AdaptiveAvgPool2d(output_size=(1, 1))),
        ])
        self.fc = network.fc

    def forward(self, images: torch.Tensor, dims: int = 2048,
                logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        feature_block = InceptionV3.BLOCK_INDEX_BY_DIM[dims]
        last_block = 3 if logits else feature_block
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        features = None
        for index, block in enumerate(self.blocks[: last_block + 1]):
            x = block(x)
            if index == feature_block:
                # Blocks 0-2 end in spatial maps; pytorch-fid averages them to one vector.
                pooled = x if x.shape[2:] == (1, 1) else F.adaptive_avg_pool2d(x, (1, 1))
                features = pooled.flatten(1)
        # Without the fc bias: see compute_inception_score.
        class_logits = F.linear(x.flatten(1), self.fc.weight) if logits else None
        return features, class_logits


@functools.lru_cache(maxsize=2)
def _load_network(path: str, sha256: str, device: str) -> FIDInception:
    network = build_fid_inception_network()
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as error:
        raise ValueError(
            f"{path} is not pytorch-fid's FID Inception state dict ({WEIGHTS_FILENAME}): "
            f"{str(error)[:500]}"
        ) from error
    model = FIDInception(network, InceptionWeights(Path(path), sha256))
    return model.eval().requires_grad_(False).to(device)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None: the first CUDA GPU when there is one (as pytorch-fid), else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_inception(weights_path: str | os.PathLike | None = None,
                   device: str | torch.device | None = "auto") -> FIDInception:
    """Resolve (see :func:`resolve_inception_weights`) and load the FID Inception on ``device``.

    Loaded networks are kept (per file content and device) so that repeated evaluations in
    one process load the file once.
    """
    weights = resolve_inception_weights(weights_path)
    return _load_network(str(weights.path), weights.sha256, str(resolve_device(device)))


# --- features ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InceptionFeatures:
    """One Inception pass: ``features`` N x dims and (optionally) ``logits`` N x 1008, float64."""

    features: np.ndarray
    logits: np.ndarray | None = None


@torch.no_grad()
def extract_features(inception: FIDInception, batches: Iterable[torch.Tensor], dims: int = 2048,
                     logits: bool = False, total: int | None = None,
                     description: str = "Inception features") -> InceptionFeatures:
    """Run ``inception`` over uint8 image batches (B x C x H x W, C = 1 or 3), in one pass.

    Each batch goes to the network's device as uint8 and becomes ``float / 255`` there;
    grayscale is repeated to three channels. Features come back as float64 like pytorch-fid's
    ``get_activations`` (float32 network outputs, widened). ``total`` sizes the progress bar.
    """
    if dims not in FID_DIMS:
        raise ValueError(f"dims must be one of {FID_DIMS} (pytorch-fid's blocks), not {dims}.")
    device = next(inception.parameters()).device
    feature_parts, logit_parts = [], []
    with tqdm(total=total, desc=description, unit="img", disable=None) as progress:
        for batch in batches:
            if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] not in (1, 3):
                raise ValueError("Inception takes uint8 batches N x C x H x W with C = 1 or 3, "
                                 f"got {batch.dtype} {tuple(batch.shape)}.")
            images = batch.to(device, non_blocking=True).float() / 255
            if images.shape[1] == 1:
                images = images.expand(-1, 3, -1, -1)
            features, class_logits = inception(images, dims=dims, logits=logits)
            feature_parts.append(features.cpu())
            if logits:
                logit_parts.append(class_logits.cpu())
            progress.update(len(batch))
    if not feature_parts:
        raise ValueError("No images to extract Inception features from.")
    return InceptionFeatures(
        torch.cat(feature_parts).double().numpy(),
        torch.cat(logit_parts).double().numpy() if logits else None,
    )


# --- statistics -------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features (rows = images), as pytorch-fid's
    ``calculate_activation_statistics``: ``np.mean(axis=0)``, ``np.cov(rowvar=False)``."""
    if len(features) < 2:
        raise ValueError("FID needs at least two images on each side (a covariance).")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def compute_fid(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., 2017):

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    The same computation as ``pytorch_fid.fid_score.calculate_frechet_distance`` (the
    stable version by D. Sutherland: ``eps`` on the diagonals when the product's square
    root is not finite; a negligible imaginary part dropped), equal to it on the same
    statistics (tested), without SciPy's deprecated ``sqrtm(disp=False)``.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("The two statistics have different dimensions.")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        logger.warning("FID: singular product; adding %s to the diagonal of the covariances", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def compute_inception_score(logits: np.ndarray, splits: int = 10,
                            shuffle_seed: int | None = 2020) -> tuple[float, float]:
    """Inception Score (Salimans et al., 2016): mean and std over ``splits`` of

        IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y|x) = softmax(logits),  p(y) = E_x p(y|x)

    Matches torch-fidelity's ``isc_features_to_metric`` (the default of torch-fidelity and
    torchmetrics): all 1008 logits of the FID Inception computed *without* the fc bias
    ("logits_unbiased"), because OpenAI's reference code (improved-gan) took the softmax
    of ``pool3 @ W`` from the TensorFlow graph, before the bias add; rows shuffled with
    ``np.random.RandomState(shuffle_seed).permutation`` (None: no shuffle, as OpenAI's code),
    so that a folder sorted by class does not give one class per split; splits are the
    contiguous slices ``[i N // splits, (i + 1) N // splits)``; the std is ``np.std``
    (ddof 0). Computed in float64.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n = len(logits)
    if n < splits:
        raise ValueError(
            f"The Inception Score needs at least {splits} images (is_splits), got {n}.")
    if shuffle_seed is not None:
        logits = logits[np.random.RandomState(shuffle_seed).permutation(n)]
    log_p = special.log_softmax(logits, axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        p_y = p[part].mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 log 0 = 0: a class no image of the split predicts adds nothing (not NaN).
            terms = np.where(p[part] > 0, p[part] * (log_p[part] - np.log(p_y)), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


# Up to this many rows per side, KID computes each kernel matrix once and subsets index it.
_KID_GRAM_LIMIT = 4096


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def compute_kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100,
                subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., 2018): mean and std over ``subsets`` of
    the unbiased estimate of MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3:

        MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (m (m-1))
                  - 2 sum_{i,j} k(x_i, y_j) / m^2

    on ``m``-sized subsets drawn without replacement. Matches torch-fidelity's
    ``kid_features_to_metric`` (the same subset draws from ``np.random.RandomState(seed)``,
    ``np.std`` with ddof 0), except that ``m`` is capped at the smaller set's size instead
    of failing: KID is unbiased, which is why it is reported at the small sample counts
    where FID's bias dominates.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError("KID: the two feature sets have different dimensions.")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two images on each side.")
    gram = max(len(a), len(b)) <= _KID_GRAM_LIMIT
    if gram:
        k_aa, k_bb = _polynomial_kernel(a, a), _polynomial_kernel(b, b)
        k_ab = _polynomial_kernel(a, b)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for s in range(subsets):
        ia = rng.choice(len(a), m, replace=False)
        ib = rng.choice(len(b), m, replace=False)
        if gram:
            kxx, kyy, kxy = k_aa[np.ix_(ia, ia)], k_bb[np.ix_(ib, ib)], k_ab[np.ix_(ia, ib)]
        else:
            x, y = a[ia], b[ib]
            kxx, kyy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
            kxy = _polynomial_kernel(x, y)
        mmds[s] = ((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                   - 2 * kxy.sum() / (m * m))
    return float(np.mean(mmds)), float(np.std(mmds))


# --- reference statistics cache -----------------------------------------------------------


@dataclass(frozen=True)
class ReferenceStatistics:
    """The real images' FID statistics and KID features, and whether they came from the cache."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    cache_hit: bool = False


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


def _reference_statistics(inception: FIDInception, batches: Iterable[torch.Tensor], *,
                          data_hash: str, resolution: str, count: int, dims: int,
                          cache_dir: str | os.PathLike | None) -> ReferenceStatistics:
    key = {"format": _CACHE_FORMAT, "data_sha256": data_hash, "resolution": resolution,
           "dims": dims, "weights_sha256": inception.weights.sha256}
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


def reference_statistics_of_images(
    inception: FIDInception, images: torch.Tensor, dims: int = 2048, batch_size: int = 50,
    cache_dir: str | os.PathLike | None = None,
) -> ReferenceStatistics:
    """FID statistics and KID features of a uint8 tensor N x C x H x W, from the cache when
    ``cache_dir`` holds them for the same content, resolution, dims and weights."""
    return _reference_statistics(
        inception, images.split(batch_size), data_hash=_tensor_content_hash(images),
        resolution=f"{images.shape[-2]}x{images.shape[-1]}px", count=len(images), dims=dims,
        cache_dir=cache_dir)


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
    return {
        "fid": fid,
        "inception_score": inception_score,
        "inception_score_std": inception_score_std,
        "kid": kid,
        "kid_std": kid_std,
        "num_samples": len(samples.features),
        "num_reference": len(reference_stats.features),
        "dims": dims,
        "inception_weights_sha256": inception.weights.sha256,
        "inception_weights_warning": inception.weights.warning,
    }


# --- image folders ------------------------------------------------------------------------


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """The images pytorch-fid reads from ``folder``: its extensions, lower case, not
    recursive, sorted (``compute_statistics_of_path``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Not a folder of images: {folder}")
    files = sorted(file for ext in IMAGE_EXTENSIONS for file in folder.glob(f"*.{ext}"))
    if not files:
        raise FileNotFoundError(
            f"No images in {folder} (looked for *.{{{','.join(sorted(IMAGE_EXTENSIONS))}}}, "
            "not in subfolders, as pytorch-fid does).")
    return files


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, files: Sequence[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            rgb = np.asarray(image.convert("RGB"))  # as pytorch-fid's ImagePathDataset
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _folder_batches(files: Sequence[Path], batch_size: int,
                    num_workers: int) -> Iterator[torch.Tensor]:
    yield from torch.utils.data.DataLoader(_ImageFiles(files), batch_size=batch_size,
                                           num_workers=num_workers, shuffle=False)


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return min(cpus, 8)  # pytorch-fid's default


def compute_fid_between_folders(folder_a: str | os.PathLike, folder_b: str | os.PathLike,
                                inception: FIDInception, dims: int = 2048, batch_size: int = 50,
                                num_workers: int | None = None,
                                cache_dir: str | os.PathLike | None = None) -> float:
    """FID between two image folders, read as ``python -m pytorch_fid`` reads them.

    ``folder_b`` is the reference: with ``cache_dir``, its statistics are cached (keyed by
    its files' names and bytes, dims and weights) and reused on the next call.
    """
    workers = _default_workers() if num_workers is None else num_workers
    files_a, files_b = list_image_files(folder_a), list_image_files(folder_b)
    with Image.open(files_b[0]) as first:
        resolution = f"{first.height}x{first.width}px"
    reference = _reference_statistics(
        inception, _folder_batches(files_b, batch_size, workers),
        data_hash=_files_content_hash(files_b), resolution=resolution, count=len(files_b),
        dims=dims, cache_dir=cache_dir)
    features = extract_features(inception, _folder_batches(files_a, batch_size, workers), dims=dims,
                                total=len(files_a)).features
    return compute_fid(*feature_statistics(features), reference.mu, reference.sigma)


def compute_inception_score_of_folder(folder: str | os.PathLike, inception: FIDInception,
                                      splits: int = 10, batch_size: int = 50,
                                      num_workers: int | None = None) -> tuple[float, float]:
    """Inception Score (mean, std) of the images in ``folder`` (read as pytorch-fid reads them)."""
    workers = _default_workers() if num_workers is None else num_workers
    files = list_image_files(folder)
    logits = extract_features(inception, _folder_batches(files, batch_size, workers), dims=2048,
                              logits=True, total=len(files)).logits
    return compute_inception_score(logits, splits)


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atelier.core.metrics",
        description="FID and Inception Score of image folders with pytorch-fid's FID Inception.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--batch-size", type=int, default=50, help="images per Inception batch")
    common.add_argument("--device", default=None,
                        help="cuda, cuda:0, cpu, ... (default: cuda when available, else cpu)")
    common.add_argument("--weights", default=None,
                        help=f"path of {WEIGHTS_FILENAME} (default: the torch hub cache)")
    common.add_argument("--num-workers", type=int, default=None,
                        help="image decoding processes (default: min(8, CPUs), as pytorch-fid)")
    commands = parser.add_subparsers(dest="command", required=True)
    fid = commands.add_parser("fid", parents=[common], help="FID between two folders")
    fid.add_argument("folders", nargs=2, metavar="DIR", help="DIR_A DIR_B (DIR_B: the reference)")
    fid.add_argument("--dims", type=int, default=2048, choices=FID_DIMS,
                     help="Inception feature dims (pytorch-fid's blocks)")
    fid.add_argument("--cache-dir", default=None,
                     help="cache DIR_B's statistics here and reuse them when unchanged")
    score = commands.add_parser("is", parents=[common], help="Inception Score of a folder")
    score.add_argument("folder", metavar="DIR")
    score.add_argument("--splits", type=int, default=10, help="number of splits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        inception = load_inception(args.weights, resolve_device(args.device))
        if args.command == "fid":
            value = compute_fid_between_folders(*args.folders, inception, dims=args.dims,
                                                batch_size=args.batch_size,
                                                num_workers=args.num_workers,
                                                cache_dir=args.cache_dir)
            print(f"FID: {value}")
        else:
            mean, std = compute_inception_score_of_folder(args.folder, inception, args.splits,
                                                          args.batch_size, args.num_workers)
            print(f"IS: {mean} +- {std}")
    except (InceptionWeightsNotFoundError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
