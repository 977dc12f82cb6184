"""Pieces both generator families share (:mod:`atelier.core.models`' DCGAN and
:mod:`atelier.core.fastgan`): DCGAN's weight initialisation and the class-label check of
class-conditional networks."""

from __future__ import annotations

import torch
from torch import nn


def initialize_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02); batch-norm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:  # only the SN discriminator's convs have one
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def class_labels(
    labels: torch.Tensor | None, num_classes: int, batch: int, network: str
) -> torch.Tensor | None:
    """``labels`` checked against the network: int64 class indices, one per row, or None."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError(
                f"This {network} is unconditional (num_classes=0): call it without labels."
            )
        return None
    if labels is None:
        raise ValueError(
            f"This {network} is class-conditional (num_classes={num_classes}): pass labels, "
            f"an int64 tensor of {batch} class indices in [0, {num_classes})."
        )
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}.")
    if labels.shape != (batch,):
        raise ValueError(
            f"Give the {network} one label per row: expected shape ({batch},), "
            f"got {tuple(labels.shape)}."
        )
    # One host sync; it turns CUDA's opaque device-side assert from nn.Embedding into a
    # message that names the problem.
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(
            f"Class labels must lie in [0, {num_classes}) for this {network}, got values from "
            f"{int(labels.min())} to {int(labels.max())}."
        )
    return labels.long()


def check_network_arguments(channels: int, width: int, num_classes: int, name: str) -> None:
    """Refuse a channel count, width or class count no network here is built for."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if width < 1:
        raise ValueError(f"{name} must be at least 1, got {width}.")
    if num_classes < 0:
        raise ValueError(f"num_classes must be 0 (unconditional) or more, got {num_classes}.")


def parameter_count(module: nn.Module) -> int:
    """The number of trainable numbers in ``module`` (buffers not counted)."""
    return sum(parameter.numel() for parameter in module.parameters())


def generator_config(generator: nn.Module) -> dict[str, int]:
    """A generator's constructor arguments (``num_classes`` only when conditional, so
    unconditional configs are the same as before conditioning existed)."""
    config = {"resolution": generator.resolution, "channels": generator.channels,
              "latent_dim": generator.latent_dim, "g_width": generator.g_width}
    if generator.num_classes:
        config["num_classes"] = generator.num_classes
    return config


def conditioned_latent(generator: nn.Module, z: torch.Tensor,
                       labels: torch.Tensor | None) -> torch.Tensor:
    """``z`` as ``N x latent_dim``, with the class embedding of ``labels`` concatenated for
    a conditional generator (labels checked by :func:`class_labels`)."""
    z = z.reshape(z.shape[0], generator.latent_dim)
    labels = class_labels(labels, generator.num_classes, z.shape[0], "generator")
    if labels is None:
        return z
    embedding = generator.class_embedding(labels.to(z.device)).to(z.dtype)
    return torch.cat([z, embedding], dim=1)
