"""One Inception pass over uint8 image batches: pooled features and, optionally, logits.

Inception sees exactly what pytorch-fid feeds it: uint8 -> float ``x / 255`` (torchvision's
``ToTensor``), grayscale repeated to RGB (PIL's ``convert('RGB')``); the network itself then
resizes to 299 x 299 and maps to ``2x - 1`` (:class:`~atelier.core.metrics.inception.FIDInception`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from atelier.core.metrics.inception import FIDInception
from atelier.core.metrics.network import FID_DIMS


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
