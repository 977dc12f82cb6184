"""DCGAN generator and discriminator for any power-of-two resolution (Radford et al., 2016).

The generator starts from a 4 x 4 feature map and doubles it with strided transposed
convolutions (batch norm + ReLU, tanh at the end) until it reaches the resolution; the
discriminator mirrors it with strided convolutions (leaky ReLU, batch norm after the first
layer) down to 4 x 4 and one logit. The widest layer is ``8 x width`` as in the paper's
64 x 64 model, so 128 and 256 add layers, not channels. Weights start from N(0, 0.02)
(batch-norm scales from N(1, 0.02)), the paper's initialisation.

``build_generator(config)`` rebuilds a generator from the ``config`` dict saved next to its
weights (``generator.config``), which is how evaluation and serving load it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_WIDTH_MULTIPLIER = 8


def _layer_widths(resolution: int, width: int) -> list[int]:
    """Widths of the feature maps at 4 x 4, 8 x 8, ..., resolution / 2."""
    if resolution < 16 or resolution & (resolution - 1):
        raise ValueError(
            f"DCGAN needs a power-of-two resolution of at least 16, got {resolution}. "
            "Set preprocessing.resolution to 32, 64, 128 or 256."
        )
    stages = int(math.log2(resolution)) - 2
    return [width * min(2 ** (stages - 1 - i), MAX_WIDTH_MULTIPLIER) for i in range(stages)]


def initialize_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02); batch-norm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Maps ``N x latent_dim`` latents to ``N x channels x resolution x resolution`` in [-1, 1]."""

    def __init__(self, resolution: int, channels: int, latent_dim: int, g_width: int) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
        self.resolution, self.channels = resolution, channels
        self.latent_dim, self.g_width = latent_dim, g_width
        widths = _layer_widths(resolution, g_width)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for narrow, wide in zip(widths[1:], widths, strict=False):
            layers += [
                nn.ConvTranspose2d(wide, narrow, 4, 2, 1, bias=False),
                nn.BatchNorm2d(narrow),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(initialize_dcgan_weights)

    @property
    def config(self) -> dict[str, int]:
        """The constructor arguments; ``build_generator(config)`` rebuilds this architecture."""
        return {
            "resolution": self.resolution,
            "channels": self.channels,
            "latent_dim": self.latent_dim,
            "g_width": self.g_width,
        }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.latent_dim, 1, 1))


class Discriminator(nn.Module):
    """Maps ``N x channels x resolution x resolution`` images to ``N`` real-vs-fake logits."""

    def __init__(self, resolution: int, channels: int, d_width: int) -> None:
        super().__init__()
        self.resolution, self.channels, self.d_width = resolution, channels, d_width
        widths = _layer_widths(resolution, d_width)[::-1]  # resolution / 2 down to 4 x 4
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for narrow, wide in zip(widths, widths[1:], strict=False):
            layers += [
                nn.Conv2d(narrow, wide, 4, 2, 1, bias=False),
                nn.BatchNorm2d(wide),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        self.apply(initialize_dcgan_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).view(-1)


def build_generator(config: dict) -> Generator:
    """Rebuild a generator from the ``config`` saved with its weights (see ``Generator.config``)."""
    expected = {"resolution", "channels", "latent_dim", "g_width"}
    if set(config) != expected:
        raise ValueError(
            f"A generator config needs exactly the keys {sorted(expected)}, got {sorted(config)}."
        )
    return Generator(**{key: int(value) for key, value in config.items()})

