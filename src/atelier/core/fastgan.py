"""FastGAN generator and discriminator (Liu, Zhu, Song and Elgammal, ICLR 2021).

"Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis"
(https://arxiv.org/abs/2101.04775) trains on a hundred or so images in a few GPU hours
with two ideas, both written here from the paper:

- Skip-layer excitation (SLE) in the generator: a low-resolution feature map is pooled
  to 4 x 4, turned by a 4 x 4 convolution, leaky ReLU (0.1), 1 x 1 convolution and sigmoid
  into one gate per channel, and multiplies a feature map many doublings above it. The
  gradient gets a short path to the early layers and the coarse layout can modulate the
  texture (the paper's style/content disentanglement).
- A self-supervised discriminator: small decoders rebuild the (down-sampled) real image
  from D's 8 x 8 features and one quarter of it from a quarter of the 16 x 16 features,
  so D has to keep a description of the whole image rather than a few cues.

Generator: the latent becomes 4 x 4 through a 4 x 4 transposed convolution, batch norm
and GLU; each up-block doubles the size with nearest-neighbour up-sampling, a 3 x 3
convolution to twice the stage width, noise injection (a per-pixel N(0, 1) map times a
learned per-channel weight, initialised 0; in train mode only, from a stream the training
loop reseeds every step), batch norm and GLU (which halves the channels); a 3 x 3
convolution and tanh give the image.

Widths (both networks): a feature map of size ``s`` has ``max(16 * width * 4 / s, width / 2)``
channels (``width`` is ``g_width`` or ``d_width``, rounded down, at least 1): ``16 * width``
at 4 x 4, halving with each doubling, never under ``width / 2``, whatever the resolution.
GLU convolutions output ``2 x`` the stage width, so that count is always even.

SLE pairing: the three largest stages ``t`` with ``32 <= t <= min(resolution, 512)`` are
gated, each by the stage ``max(t / 16, 8)``, i.e. from at least four doublings below where
that exists (the paper's 8 -> 128, 16 -> 256, 32 -> 512) and from 8 x 8 otherwise:

32: 8 -> 32; 64: 8 -> 32, 8 -> 64; 128: 8 -> 32, 8 -> 64, 8 -> 128; 256: 8 -> 64, 8 -> 128,
16 -> 256; 512: 8 -> 128, 16 -> 256, 32 -> 512.

Discriminator: residual down-blocks (main path: 4 x 4 stride-2 convolution, batch norm,
leaky ReLU (0.2), 3 x 3 convolution, batch norm, leaky ReLU; shortcut: 2 x 2 average pool,
1 x 1 convolution, batch norm, leaky ReLU; the two averaged) from the image down to 8 x 8,
then a 4 x 4 stride-2 convolution to 4 x 4 (batch norm, leaky ReLU) and a 4 x 4
convolution to one logit per image. Spectral norm (:class:`atelier.core.layers.SpectralNorm`)
wraps every convolution, linear layer and embedding by default, as the paper's D does.
The decoders (up-sample, 3 x 3 convolution, batch norm, GLU per doubling, half D's widths;
3 x 3 convolution and tanh at the end) rebuild the image at ``min(resolution, 128)`` from
the 8 x 8 features, and quarter ``q`` (0 top left, 1 top right, 2 bottom left, 3 bottom
right) of the image at ``2 * min(resolution / 2, 128)`` from quarter ``q`` of the 16 x 16
features; the loss is the sum of the two mean absolute errors.

Class-conditional (``num_classes > 0``), as :mod:`atelier.core.models`: the generator
concatenates a learned class embedding (``latent_dim`` wide, N(0, 1)) to the latent; the
discriminator has the projection head of Miyato & Koyama (2018), ``logit = linear(features)
+ sum(embed(labels) * features)`` on its 4 x 4 features summed over height and width.
Weights start from DCGAN's N(0, 0.02) (batch-norm scales N(1, 0.02)).

Different from the paper, and why:

- Resolutions from 32 up (tested to 512; the paper: 256 to 1024), so the SLE pairs are
  adapted below 512, and D's first block reads the image directly (no separate stem).
- The reconstruction loss is L1 on pixels, not the perceptual (LPIPS) distance: ``core``
  downloads no pretrained network.
- One logit per image instead of a map of logits, and no second 128 px output of G or
  second, shallower D branch for it: the training loop's losses and the DCGAN interface
  stay the same.
- The DiffAugment the paper trains with is :mod:`atelier.core.augment`, not part of these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from atelier.core.layers import (
    apply_spectral_norm,
    check_network_arguments,
    class_labels,
    conditioned_latent,
    generator_config,
    initialize_dcgan_weights,
)


def check_fastgan_resolution(resolution: int) -> None:
    """Refuse a resolution FastGAN cannot be built for (a power of two, at least 32)."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 32 \
            or resolution & (resolution - 1):
        raise ValueError(
            f"preprocessing.resolution: FastGAN needs a power-of-two resolution of at least 32, "
            f"got {resolution!r}. Set preprocessing.resolution to 32, 64, 128, 256 or 512."
        )


def stage_width(size: int, width: int) -> int:
    """Channels of a ``size x size`` feature map: ``16 * width`` at 4 x 4, halving per
    doubling, never under ``width / 2`` (nor 1)."""
    return max(width * 64 // size, width // 2, 1)


def sle_pairs(resolution: int) -> list[tuple[int, int]]:
    """``(source, target)`` sizes of the skip-layer excitations (see the module docstring)."""
    targets = [t for t in (32, 64, 128, 256, 512) if t <= resolution][-3:]
    return [(max(t // 16, 8), t) for t in targets]


class NoiseInjection(nn.Module):
    """Adds a per-pixel N(0, 1) map (one per image, shared by the channels) times a learned
    per-channel weight, initialised 0, in train mode only.

    The noise comes from ``stream`` (a ``torch.Generator`` on the activations' device, set
    by :meth:`FastGANGenerator.set_noise_stream`; the training loop reseeds it every step,
    so a resumed run draws what an uninterrupted one would), else from torch's default RNG.
    In eval mode nothing is added: a generator is then a fixed function of its latent (the
    same image for the same seed, in the gallery, the evaluation and the ONNX export), as
    StyleGAN's generators are with their noise held constant.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.stream: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        batch, _, height, width = x.shape
        noise = torch.randn(batch, 1, height, width, device=x.device, dtype=x.dtype,
                            generator=self.stream)
        return x + self.weight.to(x.dtype) * noise


class SkipLayerExcitation(nn.Module):
    """``forward(source, target)``: ``target`` times one sigmoid gate per channel computed
    from ``source`` (pooled to 4 x 4, 4 x 4 conv, leaky ReLU 0.1, 1 x 1 conv)."""

    def __init__(self, source_channels: int, target_channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(source_channels, target_channels, 4, 1, 0),
            nn.LeakyReLU(0.1),
            nn.Conv2d(target_channels, target_channels, 1, 1, 0),
            nn.Sigmoid(),
        )

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return target * self.gate(source)


def _up_block(inputs: int, outputs: int, noise: bool) -> nn.Sequential:
    """Double the size: nearest up-sampling, 3 x 3 conv to ``2 * outputs``, [noise,] BN, GLU."""
    layers: list[nn.Module] = [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(inputs, 2 * outputs, 3, 1, 1, bias=False),
    ]
    if noise:
        layers.append(NoiseInjection(2 * outputs))
    return nn.Sequential(*layers, nn.BatchNorm2d(2 * outputs), nn.GLU(dim=1))


def _sizes(low: int, high: int) -> list[int]:
    """``low, 2 * low, ..., high``."""
    return [low * 2**i for i in range(int(math.log2(high // low)) + 1)]


class FastGANGenerator(nn.Module):
    """Maps ``N x latent_dim`` latents to ``N x channels x resolution x resolution`` in [-1, 1].

    ``blocks[i]`` makes the ``8 * 2**i`` feature map; ``excitations["8_to_32"]`` (and so on,
    see :func:`sle_pairs`) gates stage 32 with stage 8. With ``num_classes > 0``,
    ``forward(z, labels)`` concatenates a ``latent_dim``-wide class embedding to ``z``.
    """

    architecture = "fastgan"

    def __init__(
        self, resolution: int, channels: int, latent_dim: int, g_width: int, num_classes: int = 0
    ) -> None:
        super().__init__()
        check_fastgan_resolution(resolution)
        check_network_arguments(channels, g_width, num_classes, "g_width")
        self.resolution, self.channels = resolution, channels
        self.latent_dim, self.g_width, self.num_classes = latent_dim, g_width, num_classes
        widths = {size: stage_width(size, g_width) for size in _sizes(4, resolution)}
        stem_inputs = 2 * latent_dim if num_classes else latent_dim
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(stem_inputs, 2 * widths[4], 4, 1, 0, bias=False),
            nn.BatchNorm2d(2 * widths[4]),
            nn.GLU(dim=1),
        )
        self.blocks = nn.ModuleList(
            _up_block(widths[size // 2], widths[size], noise=True) for size in _sizes(8, resolution)
        )
        self.sle_sources = {target: source for source, target in sle_pairs(resolution)}
        self.excitations = nn.ModuleDict({
            f"{source}_to_{target}": SkipLayerExcitation(widths[source], widths[target])
            for target, source in self.sle_sources.items()
        })
        self.to_image = nn.Sequential(
            nn.Conv2d(widths[resolution], channels, 3, 1, 1, bias=False), nn.Tanh()
        )
        self.apply(initialize_dcgan_weights)
        if num_classes:  # created last: the unconditional networks draw the same numbers
            self.class_embedding = nn.Embedding(num_classes, latent_dim)

    @property
    def config(self) -> dict[str, int | str]:
        """The architecture and its constructor arguments (``num_classes`` only when > 0)."""
        return {"architecture": self.architecture, **generator_config(self)}

    def set_noise_stream(self, stream: torch.Generator | None) -> None:
        """Draw the noise injections' noise from ``stream`` (None: torch's default RNG)."""
        for module in self.modules():
            if isinstance(module, NoiseInjection):
                module.stream = stream

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = conditioned_latent(self, z, labels)
        x = self.stem(z.reshape(z.shape[0], -1, 1, 1))
        features = {4: x}
        # The sizes come from the resolution, not from x.shape: an ONNX trace records
        # shapes as tensors, which would never match the pairs.
        for size, block in zip(_sizes(8, self.resolution), self.blocks, strict=True):
            x = block(x)
            if size in self.sle_sources:
                source = self.sle_sources[size]
                x = self.excitations[f"{source}_to_{size}"](features[source], x)
            features[size] = x
        return self.to_image(x)


class _DownBlock(nn.Module):
    """Halve the size: (4 x 4 stride-2 conv, BN, LReLU, 3 x 3 conv, BN, LReLU) averaged with
    (2 x 2 average pool, 1 x 1 conv, BN, LReLU)."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(inputs, outputs, 4, 2, 1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.LeakyReLU(0.2),
            nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.LeakyReLU(0.2),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(inputs, outputs, 1, 1, 0, bias=False),
            nn.BatchNorm2d(outputs),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.shortcut(x)) / 2


def _decoder(inputs: int, size: int, width: int, channels: int) -> nn.Sequential:
    """8 x 8 features (``inputs`` channels) to a ``size x size`` image in [-1, 1]."""
    layers: list[nn.Module] = []
    for stage in _sizes(16, size):
        outputs = stage_width(stage, width)
        layers.append(_up_block(inputs, outputs, noise=False))
        inputs = outputs
    layers += [nn.Conv2d(inputs, channels, 3, 1, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def _quarter(x: torch.Tensor, quarter: int) -> torch.Tensor:
    """Quarter 0 (top left), 1 (top right), 2 (bottom left) or 3 (bottom right) of ``x``."""
    half = x.shape[-1] // 2
    row, column = divmod(quarter, 2)
    return x[..., row * half:(row + 1) * half, column * half:(column + 1) * half]


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    return images if images.shape[-1] == size else F.interpolate(images, size=size, mode="area")


class FastGANDiscriminator(nn.Module):
    """Maps ``N x channels x resolution x resolution`` images to ``N`` real-vs-fake logits.

    ``forward`` gives the logits; ``forward_with_reconstruction`` also runs both decoders
    (every parameter takes part, as DDP needs) and returns ``(logits, reconstruction_loss)``.
    ``spectral_norm=False`` leaves the weights unnormalised (batch norm stays either way).
    """

    architecture = "fastgan"

    def __init__(
        self,
        resolution: int,
        channels: int,
        d_width: int,
        num_classes: int = 0,
        *,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        check_fastgan_resolution(resolution)
        check_network_arguments(channels, d_width, num_classes, "d_width")
        self.resolution, self.channels, self.d_width = resolution, channels, d_width
        self.num_classes, self.spectral_norm = num_classes, spectral_norm
        self.whole_size, self.part_size = min(resolution, 128), min(resolution // 2, 128)
        sizes = _sizes(8, resolution // 2)[::-1]  # resolution / 2 down to 8
        inputs, blocks = channels, []
        for size in sizes:
            blocks.append(_DownBlock(inputs, stage_width(size, d_width)))
            inputs = stage_width(size, d_width)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            nn.Conv2d(inputs, inputs, 4, 2, 1, bias=False), nn.BatchNorm2d(inputs), nn.LeakyReLU(0.2)
        )
        if not num_classes:
            self.logit = nn.Conv2d(inputs, 1, 4, 1, 0, bias=False)
        self.whole_decoder = _decoder(inputs, self.whole_size, d_width // 2, channels)
        self.part_decoder = _decoder(stage_width(16, d_width), self.part_size, d_width // 2, channels)
        self.apply(initialize_dcgan_weights)
        if num_classes:  # the projection head of models.Discriminator
            self.projection_linear = nn.Linear(inputs, 1)
            self.class_embedding = nn.Embedding(num_classes, inputs)
            for weight in (self.projection_linear.weight, self.class_embedding.weight):
                nn.init.normal_(weight, 0.0, 0.02)
            nn.init.zeros_(self.projection_linear.bias)
        if spectral_norm:  # after the initialisation, which it then normalises
            apply_spectral_norm(self)

    @property
    def config(self) -> dict[str, int | str | bool]:
        """The architecture and its constructor arguments (``num_classes`` only when > 0,
        ``spectral_norm`` only when switched off)."""
        config: dict[str, int | str | bool] = {
            "architecture": self.architecture,
            "resolution": self.resolution,
            "channels": self.channels,
            "d_width": self.d_width,
        }
        if self.num_classes:
            config["num_classes"] = self.num_classes
        if not self.spectral_norm:
            config["spectral_norm"] = False
        return config

    def _features(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        features, x = {}, images
        for size, block in zip(_sizes(8, self.resolution // 2)[::-1], self.blocks, strict=True):
            x = block(x)
            features[size] = x
        return features

    def _logits(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.head(features)
        if labels is None:
            return self.logit(x).reshape(-1)
        pooled = x.sum(dim=(2, 3))
        projection = (self.class_embedding(labels.to(x.device)) * pooled).sum(dim=1)
        return self.projection_linear(pooled).reshape(-1) + projection

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                quarter: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The logits; with ``quarter`` (0 to 3) also the reconstruction loss, as
        ``(logits, loss)``: the training loop's D step on real images passes it through
        ``forward`` so that DDP sees the decoders take part."""
        labels = class_labels(labels, self.num_classes, images.shape[0], "discriminator")
        if quarter is None:
            return self._logits(self._features(images)[8], labels)
        if isinstance(quarter, bool) or quarter not in (0, 1, 2, 3):
            raise ValueError(f"quarter must be 0, 1, 2 or 3, got {quarter!r}.")
        features = self._features(images)
        logits = self._logits(features[8], labels)
        whole = self.whole_decoder(features[8])
        part = self.part_decoder(_quarter(features[16], quarter))
        target = images.detach().float()
        whole_target = _resized(target, self.whole_size)
        part_target = _quarter(_resized(target, 2 * self.part_size), quarter)
        loss = F.l1_loss(whole.float(), whole_target) + F.l1_loss(part.float(), part_target)
        return logits, loss

    def forward_with_reconstruction(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        quarter: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, reconstruction_loss)``: the loss (float32) is the mean absolute error of
        the whole-image decoder plus that of the quarter decoder. ``quarter`` (0 to 3) is drawn
        with ``generator`` (torch's default RNG when None) unless given."""
        if quarter is None:
            device = generator.device if generator is not None else "cpu"
            quarter = int(torch.randint(4, (1,), generator=generator, device=device))
        return self(images, labels, quarter=quarter)
