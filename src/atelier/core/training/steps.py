"""What one training step computes: the losses, the R1 penalty, an optimizer step, the EMA.

- Losses: ``bce`` is the non-saturating loss of the GAN and DCGAN papers, ``hinge`` the
  hinge loss of SN-GAN and BigGAN.
- R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?"):
  ``gamma / 2 * E[ ||grad_x D(x)||^2 ]`` on real images, applied lazily every ``r1_every``
  steps with its weight multiplied by ``r1_every`` (StyleGAN2's lazy regularisation).
- EMA of the generator's weights with a horizon in images and a ramp-up proportional to
  progress, as StyleGAN2-ADA's ``ema_kimg`` / ``ema_rampup``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "bce":  # DCGAN: BCE(D(x), 1) + BCE(D(G(z)), 0); softplus(-t) = BCE-with-logits(t, 1)
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()  # hinge


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    fake_logits = fake_logits.float()
    if kind == "bce":  # the non-saturating loss of the GAN and DCGAN papers
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()  # hinge


def r1_penalty(discriminator: nn.Module, real: torch.Tensor, labels: torch.Tensor | None,
               augment: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``E[ ||grad_x D(augment(x))||^2 ]`` over the batch (sum over pixels, mean over images).

    The gradient is taken with respect to the un-augmented real images, as StyleGAN2-ADA
    does, with ``create_graph`` so the penalty trains D. ``discriminator`` is the plain
    module: DDP's reducer and ``torch.compile`` do not support this double backward.
    """
    real = real.detach().requires_grad_(True)
    logits = discriminator(augment(real), labels)
    (gradient,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
    return gradient.float().square().sum(dim=(1, 2, 3)).mean()


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


class MovingAverage:
    """Keeps ``average``'s weights an exponential moving average of ``source``'s.

    The averaging horizon is set in images, not steps, so it means the same at any batch
    size: the weights of ``ema_kimg`` thousand images ago count half. With ``ema_rampup``
    the horizon is at most ``ema_rampup`` times the images seen so far, so a short run
    does not average in its first, random weights. Batch-norm running statistics are
    copied from ``source`` (they describe the activations of the current weights, which
    the average follows closely at this horizon), as StyleGAN2-ADA copies buffers.
    """

    def __init__(self, average: nn.Module, source: nn.Module, ema_kimg: float,
                 ema_rampup: float, batch_size: int) -> None:
        self.ema_nimg, self.ema_rampup, self.batch_size = ema_kimg * 1000, ema_rampup, batch_size
        self.average_params, self.source_params = list(average.parameters()), list(source.parameters())
        self.average_buffers, self.source_buffers = list(average.buffers()), list(source.buffers())

    def beta(self, images_seen: int) -> float:
        """The decay after ``images_seen`` images: ``0.5 ** (batch_size / horizon)``."""
        horizon = self.ema_nimg
        if self.ema_rampup > 0:
            horizon = min(horizon, images_seen * self.ema_rampup)
        return 0.5 ** (self.batch_size / max(horizon, 1e-8))

    @torch.no_grad()
    def update(self, images_seen: int) -> None:
        torch._foreach_lerp_(self.average_params, self.source_params, 1 - self.beta(images_seen))
        if self.average_buffers:
            torch._foreach_copy_(self.average_buffers, self.source_buffers)
