"""DCGAN generator and discriminator for any power-of-two resolution (Radford et al., 2016).

The generator starts from a 4 x 4 feature map and doubles it with strided transposed
convolutions (batch norm + ReLU, tanh at the end) until it reaches the resolution; the
discriminator mirrors it with strided convolutions (leaky ReLU, batch norm after the first
layer) down to 4 x 4 and one logit. The widest layer is ``8 x width`` as in the paper's
64 x 64 model, so 128 and 256 add layers, not channels. Weights start from N(0, 0.02)
(batch-norm scales from N(1, 0.02)), the paper's initialisation.

Two opt-in variants leave the defaults (parameters, state-dict keys, initial weights for a
seed) exactly as above:

- ``Discriminator(..., spectral_norm=True)``: the SN-GAN discriminator of Miyato et al.
  (2018), every layer's weight divided by its largest singular value, no batch norm.
- ``num_classes > 0``: class-conditional networks. The generator concatenates a learned
  class embedding to the latent; the discriminator has the projection head of Miyato &
  Koyama (2018), "cGANs with Projection Discriminator".

The trained generator travels as one typed artifact, :class:`GeneratorCheckpoint` (its
architecture ``config``, its weights, and where and at which step it was trained), saved
as a plain dict that ``torch.load(weights_only=True)`` reads. :func:`load_generator` turns
a checkpoint, or the file holding one, into a ready ``Generator``: training, evaluation,
registration, serving, the notebook and the tests all load generators through it.

The other network family, FastGAN (``training.architecture: fastgan``), lives in
:mod:`atelier.core.fastgan`; :func:`build_generator` builds it from a config whose
``architecture`` says so (DCGAN configs carry no ``architecture`` key, as before the
choice existed), :func:`build_discriminator` builds either discriminator, and the
checkpoint format is the same for both.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atelier.core.fastgan import FastGANDiscriminator, FastGANGenerator, check_fastgan_resolution
from atelier.core.layers import (
    apply_spectral_norm,
    class_labels,
    conditioned_latent,
    generator_config,
    initialize_dcgan_weights,
)
from atelier.core.storage import write_atomically

MAX_WIDTH_MULTIPLIER = 8


#: The generator families ``training.architecture`` chooses between.
ARCHITECTURES = ("dcgan", "fastgan")


def check_resolution(resolution: int, architecture: str = "dcgan") -> None:
    """Refuse a resolution ``architecture``'s networks cannot be built for (DCGAN: a power
    of two, at least 16; FastGAN: at least 32), naming ``preprocessing.resolution``; the
    preflight calls it before any node runs."""
    if architecture == "fastgan":
        check_fastgan_resolution(resolution)
        return
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 16 \
            or resolution & (resolution - 1):
        raise ValueError(
            f"preprocessing.resolution: DCGAN needs a power-of-two resolution of at least 16, "
            f"got {resolution!r}. Set preprocessing.resolution to 32, 64, 128 or 256."
        )


def _layer_widths(resolution: int, width: int) -> list[int]:
    """Widths of the feature maps at 4 x 4, 8 x 8, ..., resolution / 2."""
    check_resolution(resolution)
    stages = int(math.log2(resolution)) - 2
    return [width * min(2 ** (stages - 1 - i), MAX_WIDTH_MULTIPLIER) for i in range(stages)]


class Generator(nn.Module):
    """Maps ``N x latent_dim`` latents to ``N x channels x resolution x resolution`` in [-1, 1].

    With ``num_classes > 0`` it is class-conditional: ``forward(z, labels)`` takes ``N``
    int64 class indices, looks up a learned ``latent_dim``-wide class embedding (an
    ``nn.Embedding`` initialised N(0, 1), the latent's own scale) and concatenates it to
    ``z``, so the first transposed convolution reads ``2 * latent_dim`` channels.
    Concatenation leaves the latent untouched (a product could zero latent components
    where an embedding entry is near 0) and needs nothing beyond the embedding.
    """

    #: The architecture's name, as the ONNX export records it (:mod:`atelier.core.export`).
    architecture = "dcgan"

    def __init__(
        self, resolution: int, channels: int, latent_dim: int, g_width: int, num_classes: int = 0
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (unconditional) or more, got {num_classes}.")
        self.resolution, self.channels = resolution, channels
        self.latent_dim, self.g_width, self.num_classes = latent_dim, g_width, num_classes
        widths = _layer_widths(resolution, g_width)
        stem_inputs = 2 * latent_dim if num_classes else latent_dim
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(stem_inputs, widths[0], 4, 1, 0, bias=False),
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
        if num_classes:  # created last: the unconditional networks draw the same numbers
            self.class_embedding = nn.Embedding(num_classes, latent_dim)

    @property
    def config(self) -> dict[str, int]:
        """The constructor arguments; ``build_generator(config)`` rebuilds this architecture.

        ``num_classes`` appears only for a conditional generator, so unconditional configs
        are the same as before conditioning existed.
        """
        return generator_config(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = conditioned_latent(self, z, labels)
        return self.main(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """Maps ``N x channels x resolution x resolution`` images to ``N`` real-vs-fake logits.

    ``spectral_norm=True`` gives the SN-GAN discriminator (Miyato et al., 2018, "Spectral
    Normalization for Generative Adversarial Networks"): every convolution (and the
    projection head's linear layer and embedding) is wrapped with
    ``torch.nn.utils.parametrizations.spectral_norm``, which divides the weight by its
    largest singular value (one power iteration per training forward), and the batch
    norms are removed, as in that paper; the convolutions then carry biases (initialised 0).

    ``num_classes > 0`` adds the projection head of Miyato & Koyama (2018), "cGANs with
    Projection Discriminator": with ``features`` the last (4 x 4) feature map summed over
    height and width, ``logit = linear(features) + sum(embed(labels) * features)``, and
    ``forward(images, labels)`` needs the ``N`` int64 class indices. With
    ``num_classes = 0`` the head is DCGAN's 4 x 4 convolution to one logit.
    """

    def __init__(
        self,
        resolution: int,
        channels: int,
        d_width: int,
        spectral_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (unconditional) or more, got {num_classes}.")
        self.resolution, self.channels, self.d_width = resolution, channels, d_width
        self.spectral_norm, self.num_classes = spectral_norm, num_classes
        widths = _layer_widths(resolution, d_width)[::-1]  # resolution / 2 down to 4 x 4
        bias = spectral_norm  # batch norm's shift is gone, so the conv supplies one
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1, bias=bias),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for narrow, wide in zip(widths, widths[1:], strict=False):
            layers.append(nn.Conv2d(narrow, wide, 4, 2, 1, bias=bias))
            if not spectral_norm:
                layers.append(nn.BatchNorm2d(wide))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        if not num_classes:
            layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=bias))
        self.main = nn.Sequential(*layers)
        self.apply(initialize_dcgan_weights)
        if num_classes:
            self.head = nn.Linear(widths[-1], 1)
            self.class_embedding = nn.Embedding(num_classes, widths[-1])
            for weight in (self.head.weight, self.class_embedding.weight):
                nn.init.normal_(weight, 0.0, 0.02)
            nn.init.zeros_(self.head.bias)
        if spectral_norm:
            self._apply_spectral_norm()

    def _apply_spectral_norm(self) -> None:
        # After the DCGAN initialisation: the parametrization then normalises those weights.
        # layers.SpectralNorm keeps the power-iteration vectors u and v as buffers
        # (``..._u``, ``..._v``) updated in place, so DDP broadcasts them from rank 0 with
        # the other buffers, and they are saved in the state dict. It clones them before
        # use, so D(real) and D(fake) can share one backward. Under autocast the power
        # iteration runs in the autocast dtype and writes back into the float32 buffers.
        apply_spectral_norm(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = class_labels(labels, self.num_classes, images.shape[0], "discriminator")
        if labels is None:
            return self.main(images).view(-1)
        features = self.main(images).sum(dim=(2, 3))
        projection = (self.class_embedding(labels.to(images.device)) * features).sum(dim=1)
        return self.head(features).view(-1) + projection


#: The keys of every generator ``config``, and the optional ones (``Generator.config``;
#: ``architecture`` is absent from DCGAN configs, which predate the choice).
GENERATOR_CONFIG_KEYS = frozenset({"resolution", "channels", "latent_dim", "g_width"})
OPTIONAL_CONFIG_KEYS = frozenset({"num_classes", "architecture"})


def build_generator(config: dict) -> Generator | FastGANGenerator:
    """Rebuild a generator from the ``config`` saved with its weights (``.config`` of a
    :class:`Generator` or a :class:`~atelier.core.fastgan.FastGANGenerator`).

    ``architecture`` is optional (absent: ``dcgan``), and so is ``num_classes`` (absent:
    unconditional), so configs saved before either existed still load.
    """
    required = GENERATOR_CONFIG_KEYS
    if not required <= set(config) <= required | OPTIONAL_CONFIG_KEYS:
        raise ValueError(
            f"A generator config needs exactly the keys {sorted(required)}, plus 'num_classes' "
            f"for a class-conditional generator and 'architecture' for a non-DCGAN one; got "
            f"{sorted(config)}."
        )
    arguments = {key: int(value) for key, value in config.items() if key != "architecture"}
    architecture = config.get("architecture", "dcgan")
    if architecture == "fastgan":
        return FastGANGenerator(**arguments)
    if architecture != "dcgan":
        raise ValueError(f"Unknown generator architecture {architecture!r}; known: {ARCHITECTURES}.")
    return Generator(**arguments)


def build_discriminator(architecture: str, resolution: int, channels: int, d_width: int,
                        spectral_norm: bool, num_classes: int) -> nn.Module:
    """The discriminator that trains a generator of ``architecture``, spectrally normalised
    when ``spectral_norm`` (FastGAN's paper always is; ``conf/fastgan`` sets it)."""
    if architecture == "fastgan":
        return FastGANDiscriminator(resolution, channels, d_width, num_classes,
                                    spectral_norm=spectral_norm)
    return Discriminator(resolution, channels, d_width, spectral_norm=spectral_norm,
                         num_classes=num_classes)


GENERATOR_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class GeneratorCheckpoint:
    """A trained generator: architecture, weights and provenance, in one typed value.

    ``config`` holds the constructor arguments of :class:`Generator` (``Generator.config``);
    ``state_dict`` its weights (CPU tensors). ``training_device`` says where it was trained
    (e.g. ``cuda:0``), ``step`` the training step the weights come from and ``variant``
    which weights they are (``ema``: the exponential moving average; ``raw``: the
    optimised generator itself). ``class_names`` names the classes of a class-conditional
    generator (label ``i`` is ``class_names[i]``); empty when unconditional or unnamed, and
    files written before it existed read back with it empty. ``parent`` identifies the
    model a fine-tune started from (``training.init_from``: the ``identity`` of
    :class:`~atelier.core.training.parent.ParentModel`); empty for a run from scratch.
    """

    config: dict[str, int]
    state_dict: dict[str, torch.Tensor]
    training_device: str = "unknown"
    step: int = 0
    variant: str = "ema"
    class_names: tuple[str, ...] = ()
    parent: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "parent", {str(k): str(v) for k, v in dict(self.parent).items()})
        num_classes = int(self.config.get("num_classes", 0))
        if self.class_names and len(self.class_names) != num_classes:
            raise ValueError(
                f"Got {len(self.class_names)} class names for a generator with "
                f"num_classes={num_classes}: give one name per class, or none."
            )

    @classmethod
    def from_generator(cls, generator: Generator, **provenance: Any) -> GeneratorCheckpoint:
        """Snapshot ``generator``'s architecture and weights (copied to the CPU)."""
        state = {key: value.detach().cpu().clone() for key, value in generator.state_dict().items()}
        return cls(config=dict(generator.config), state_dict=state, **provenance)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: plain values and tensors only (``weights_only`` loadable)."""
        return {"format": GENERATOR_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorCheckpoint:
        """Read the on-disk form; a dict without ``config``/``state_dict`` is refused clearly."""
        if not isinstance(data, dict) or not {"config", "state_dict"} <= set(data):
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                "Not an Atelier generator file: it needs 'config' and 'state_dict' (found "
                f"{found}). Generator files are written by the training pipeline "
                "(data/06_models/generator.pt)."
            )
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint to ``path`` atomically."""
        write_atomically(path, lambda handle: torch.save(self.to_dict(), handle))

    @classmethod
    def load(cls, path: str | os.PathLike) -> GeneratorCheckpoint:
        """Read a checkpoint written by :meth:`save` (no pickled code is ever run)."""
        return cls.from_dict(torch.load(Path(path), map_location="cpu", weights_only=True))


def load_generator(
    source: GeneratorCheckpoint | dict | str | os.PathLike, device: str | torch.device = "cpu"
) -> Generator:
    """A ready generator (weights loaded, eval mode, on ``device``) from a checkpoint.

    ``source`` is a :class:`GeneratorCheckpoint`, its dict form, or the path of a file
    written by :meth:`GeneratorCheckpoint.save`.
    """
    if isinstance(source, (str, os.PathLike)):
        source = GeneratorCheckpoint.load(source)
    elif isinstance(source, dict):
        source = GeneratorCheckpoint.from_dict(source)
    generator = build_generator(source.config)
    generator.load_state_dict(source.state_dict)
    return generator.to(device).eval()
