"""Pieces both generator families share (:mod:`atelier.core.models`' DCGAN and
:mod:`atelier.core.fastgan`): DCGAN's weight initialisation, the spectral norm of their
discriminators and the class-label check of class-conditional networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


def initialize_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02); batch-norm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:  # only the SN discriminator's convs have one
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@torch.library.custom_op("atelier::spectral_norm_vectors", mutates_args=())
def _unrecomputable_copies(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of ``u`` and ``v`` that torch.compile's partitioner cannot recompute (a custom
    op is not on its recomputation allowlist), so the backward saves them (see SpectralNorm)."""
    return u.clone(), v.clone()


@_unrecomputable_copies.register_fake
def _(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(u), torch.empty_like(v)


class SpectralNorm(nn.Module):
    """Parametrization ``weight / sigma``, sigma the largest singular value of ``weight`` as
    an ``out x fan_in`` matrix, estimated by power iteration (Miyato et al. 2018, SN-GAN).

    ``u`` (``out``) and ``v`` (``fan_in``) are buffers (``_u``, ``_v``: saved in the state
    dict, broadcast by DDP), started from N(0, 1), normalised and refined by 15 iterations;
    each forward in train mode runs one more, in place and outside autograd, and none in
    eval mode. ``sigma = u^T W v`` is differentiated through ``W`` only. The same numbers,
    state-dict keys and random draws as ``torch.nn.utils.parametrizations.spectral_norm``
    (dim 0), which it replaces for one reason: under torch.compile (2.14) that one's backward
    may recompute ``u`` from the ``v`` buffer that the forward has since overwritten, for a
    weight of fan-in 4 or less (FastGAN's 1 x 1 shortcut convolution of the image channels):
    a wrong read, which the second D forward of a step turns into autograd's "modified by an
    inplace operation" error (the partitioner's recomputation of reads of mutated inputs,
    pytorch/pytorch#197039). Compiled, ``u`` and ``v`` pass through a custom op that the
    partitioner cannot recompute, so the backward keeps the copies it was given.
    """

    def __init__(self, weight: torch.Tensor, eps: float = 1e-12) -> None:
        super().__init__()
        if weight.ndim < 2:
            raise ValueError(f"SpectralNorm needs a matrix or conv weight, got {weight.ndim} dims.")
        self.eps = eps
        weight_mat = weight.flatten(1)
        u = weight_mat.new_empty(weight_mat.shape[0]).normal_(0, 1)
        v = weight_mat.new_empty(weight_mat.shape[1]).normal_(0, 1)
        self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
        self._power_iteration(weight_mat, 15)

    @torch.no_grad()
    def _power_iteration(self, weight_mat: torch.Tensor, iterations: int) -> None:
        for _ in range(iterations):  # written into the buffers: DDP holds them by reference
            F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps, out=self._u)
            F.normalize(torch.mv(weight_mat.t(), self._u), dim=0, eps=self.eps, out=self._v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        weight_mat = weight.flatten(1)
        if self.training:
            self._power_iteration(weight_mat, 1)
        # Copies, so that D(real) and D(fake) can share one backward.
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        if torch.compiler.is_compiling():
            u, v = _unrecomputable_copies(u, v)
        sigma = torch.vdot(u, torch.mv(weight_mat, v))
        return weight / sigma

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


def apply_spectral_norm(network: nn.Module) -> None:
    """Wrap every convolution, linear layer and embedding of ``network`` in :class:`SpectralNorm`
    (its weight becomes ``parametrizations.weight.original``, with ``...weight.0._u``, ``_v``)."""
    for module in list(network.modules()):
        if isinstance(module, nn.ConvTranspose2d):
            raise ValueError("apply_spectral_norm normalises dim 0: no transposed convolutions.")
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight))


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
