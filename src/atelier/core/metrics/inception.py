"""pytorch-fid's FID Inception: where its weights file is, and the network that loads it.

Which weights (``evaluation.inception_weights``, :func:`resolve_inception_weights`):

- ``auto``: the file in the torch hub cache under ``TORCH_HOME``, where pytorch-fid puts
  it; else one download attempt from pytorch-fid's URL; else the deterministic stand-in
  (:mod:`~atelier.core.metrics.standin`), built once into the given cache folder. The
  main job never stops for lack of weights.
- ``official``: the official ``pt_inception-2015-12-05`` file (cache or download), or
  :class:`~atelier.core.errors.InceptionWeightsNotFoundError`.
- a path: that file.

:class:`InceptionWeights` names the file's sha256, and every result computed with a file
that is not the official one carries a loud STAND-IN warning.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3
from torch import nn

from atelier.core.errors import InceptionWeightsNotFoundError
from atelier.core.metrics.network import build_fid_inception_network
from atelier.core.metrics.standin import standin_weights_path, write_standin_weights
from atelier.core.storage import file_sha256

logger = logging.getLogger(__name__)

WEIGHTS_FILENAME = Path(urlparse(FID_WEIGHTS_URL).path).name  # pt_inception-2015-12-05-6726825d.pth
# torch hub names files <name>-<first 8 hex digits of their sha256>.<ext>.
OFFICIAL_WEIGHTS_SHA256_PREFIX = "6726825d"
# A failed download must not hang an offline machine: each socket operation of the one
# download attempt gives up after this many seconds.
DOWNLOAD_TIMEOUT_S = 30


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
        "With evaluation.inception_weights=auto (the default) the main job falls back to a "
        "deterministic STAND-IN whose metrics are NOT comparable with FID."
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


WEIGHT_SETTINGS = ("auto", "official")


def resolve_inception_weights(setting: str | os.PathLike | None = "auto",
                              standin_dir: str | os.PathLike | None = None) -> InceptionWeights:
    """Find the FID Inception weights for ``setting`` (see the module docstring).

    ``auto`` (or None): the torch hub cache, else one download attempt (what pytorch-fid
    itself would do), else, when ``standin_dir`` is given, the stand-in built once there
    (logged loudly); without ``standin_dir`` a failed download raises.
    ``official``: the hub cache or a download, and the file must be the official one.
    Anything else is a path, which must exist. Failures raise
    :class:`InceptionWeightsNotFoundError`, naming the file and where it can go, before any
    work is done.
    """
    setting = "auto" if setting is None else str(setting)
    if setting not in WEIGHT_SETTINGS:
        weights_path = Path(setting).expanduser()
        if not weights_path.is_file():
            raise InceptionWeightsNotFoundError(
                _missing_weights_message(f"the configured file {weights_path} does not exist"))
    else:
        weights_path = _official_or_standin_path(setting, standin_dir)
    stat = weights_path.stat()
    weights = InceptionWeights(
        weights_path.resolve(), _sha256_of_file(str(weights_path.resolve()), stat.st_size,
                                                stat.st_mtime_ns))
    if setting == "official" and not weights.is_official:
        raise InceptionWeightsNotFoundError(_missing_weights_message(
            f"evaluation.inception_weights is 'official' but {weights.path} is not the official "
            f"file (sha256 {weights.sha256[:16]}..., the official one starts with "
            f"{OFFICIAL_WEIGHTS_SHA256_PREFIX})"))
    if weights.warning:
        logger.warning("!!! %s File: %s", weights.warning, weights.path)
    return weights


def _official_or_standin_path(setting: str, standin_dir: str | os.PathLike | None) -> Path:
    hub_path = hub_weights_path()
    if hub_path.is_file():
        return hub_path
    try:
        _download_weights(hub_path)
        return hub_path
    except InceptionWeightsNotFoundError:
        if setting == "official" or standin_dir is None:
            raise
    standin = standin_weights_path(standin_dir)
    if not standin.is_file():
        logger.warning("!!! The official FID Inception weights are neither at %s nor "
                       "downloadable: building the deterministic STAND-IN at %s. Its FID, IS "
                       "and KID are NOT comparable with published figures. Put the official "
                       "file there (or set evaluation.inception_weights) for real FID.",
                       hub_path, standin)
        write_standin_weights(standin)
    return standin


# --- network --------------------------------------------------------------------------
# The architecture is atelier.core.metrics.network's (the stand-in builds the same one).


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
        # Without the fc bias: see compute_inception_score in inception_score.py.
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


def load_inception(weights: str | os.PathLike | None = "auto",
                   device: str | torch.device | None = "auto",
                   standin_dir: str | os.PathLike | None = None) -> FIDInception:
    """Resolve ``weights`` (``auto``, ``official`` or a path: see
    :func:`resolve_inception_weights`) and load the FID Inception on ``device``.

    Loaded networks are kept (per file content and device) so that repeated evaluations in
    one process load the file once.
    """
    weights = resolve_inception_weights(weights, standin_dir)
    return _load_network(str(weights.path), weights.sha256, str(resolve_device(device)))


def load_evaluation_inception(config) -> FIDInception:
    """The FID Inception of an :class:`~atelier.core.metrics.config.EvaluationConfig`: its
    ``inception_weights`` (auto, official or a path) on its ``device``; when ``auto`` needs
    the stand-in, it is built in ``reference_cache_dir`` (a temporary folder when that is
    null)."""
    standin_dir = config.reference_cache_dir or Path(tempfile.gettempdir()) / "atelier-inception"
    return load_inception(config.inception_weights, config.device, standin_dir)
