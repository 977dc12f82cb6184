"""What one training step computes: the losses, the R1 penalty, an optimizer step, the EMA.

- Losses: ``bce`` is the non-saturating loss of the GAN and DCGAN papers, ``hinge`` the
  hinge loss of SN-GAN and BigGAN.
- R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?"):
  ``gamma / 2 * E[ ||grad_x D(x)||^2 ]`` on real images, applied lazily every ``r1_every``
  steps with its weight multiplied by ``r1_every`` (StyleGAN2's lazy regularisation).
- EMA of the generator's weights with a horizon in images and a ramp-up proportional to
  progress, as StyleGAN2-ADA's ``ema_kimg`` / ``ema_rampup``; its batch-norm statistics are
  recomputed for the averaged weights (:func:`recalibrate_batchnorm`) before it is sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from atelier.core.training.config import TrainingConfig


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
    does not average in its first, random weights. Only the weights are averaged: the
    source's batch-norm running statistics describe the source's weights, not the average
    (copying them in cost 2 to 20 FID on real RGB images, benchmarks/README.md), so callers
    :func:`recalibrate_batchnorm` the average before sampling it.
    """

    def __init__(self, average: nn.Module, source: nn.Module, ema_kimg: float,
                 ema_rampup: float, batch_size: int) -> None:
        self.ema_nimg, self.ema_rampup, self.batch_size = ema_kimg * 1000, ema_rampup, batch_size
        self.average_params, self.source_params = list(average.parameters()), list(source.parameters())

    def beta(self, images_seen: int) -> float:
        """The decay after ``images_seen`` images: ``0.5 ** (batch_size / horizon)``."""
        horizon = self.ema_nimg
        if self.ema_rampup > 0:
            horizon = min(horizon, images_seen * self.ema_rampup)
        return 0.5 ** (self.batch_size / max(horizon, 1e-8))

    @torch.no_grad()
    def update(self, images_seen: int) -> None:
        torch._foreach_lerp_(self.average_params, self.source_params, 1 - self.beta(images_seen))


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, batches: int = 32, batch_size: int = 64,
                          seed: int = 0) -> None:
    """Recompute ``generator``'s batch-norm running statistics for its current weights.

    The statistics are reset and averaged over ``batches`` batches of seeded latents (and,
    for a conditional generator, classes) in train mode, with ``momentum=None`` (a plain
    cumulative average), as for a weight-averaged network (Izmailov et al. 2018, SWA's
    ``update_bn``). Deterministic for a seed; the module's mode is restored.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    was_training = generator.training
    generator.train()
    device = next(generator.parameters()).device
    stream = torch.Generator().manual_seed(seed)
    num_classes = getattr(generator, "num_classes", 0)
    # A generator with noise inputs (FastGAN's) draws them from torch's default RNG here:
    # forked and seeded, so the statistics depend on the seed alone.
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _ in range(batches):
                z = torch.randn(batch_size, generator.latent_dim, generator=stream).to(device)
                labels = (torch.randint(num_classes, (batch_size,), generator=stream).to(device)
                          if num_classes else None)
                generator(z, labels)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        generator.train(was_training)


def discriminator_step_losses(d_train: nn.Module, augment: Callable[[torch.Tensor], torch.Tensor],
                              real: torch.Tensor, fake: torch.Tensor,
                              labels: torch.Tensor | None, config: TrainingConfig,
                              quarter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The D step's (logits on the augmented reals, loss). FastGAN's discriminator also
    rebuilds the reals it judged (``quarter`` for its part decoder), in the same forward
    (so DDP sees its decoders take part), and that L1 loss joins D's."""
    if config.architecture == "fastgan":
        real_logits, reconstruction = d_train(augment(real), labels, quarter=quarter)
    else:
        real_logits, reconstruction = d_train(augment(real), labels), 0
    loss = discriminator_loss(config.loss, real_logits, d_train(augment(fake), labels))
    return real_logits, loss + reconstruction
