"""The seed recipe both benchmarks compare Atelier with: PyTorch's ``examples/dcgan`` loop.

Written once here, around ``atelier.core.models`` so the networks and their
initialisation are Atelier's: for each batch of real images (in [-1, 1]), the
discriminator step (BCE on D(x) against 1, then on D(G(z).detach()) against 0, gradients
accumulated, one Adam step), then the generator step (BCE on D(G(z)) against 1 through the
updated D), fp32, the raw generator kept. BCE with logits is written as softplus
(``BCE(sigmoid(l), 1) = softplus(-l)``, ``BCE(sigmoid(l), 0) = softplus(l)``).

``benchmarks/quality.py`` feeds it batches indexed from a uint8 tensor (a fresh shuffle
every epoch, last batch short, as ``DataLoader(shuffle=True)``); ``benchmarks/
train_throughput.py`` feeds it torchvision ``ImageFolder`` + ``DataLoader`` batches and
syncs every step (``log_every_step``), as the example logs every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from atelier.core.models import Discriminator, Generator


def train_seed_recipe(epochs: Callable[[], Iterable[torch.Tensor]], steps: int, *, resolution: int,
                      channels: int, latent_dim: int, g_width: int, d_width: int, seed: int,
                      device: torch.device, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                      warmup: int = 0, log_every_step: bool = False) -> tuple[Generator, float, int]:
    """Train for ``steps`` steps on the batches of ``epochs()`` (called once per epoch, real
    images in [-1, 1]); returns (the raw generator in eval mode, images/s after the first
    ``warmup`` steps, images seen)."""
    torch.manual_seed(seed)
    generator = Generator(resolution, channels, latent_dim, g_width).to(device)
    discriminator = Discriminator(resolution, channels, d_width).to(device)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    step, seen, timed, start = 0, 0, 0, time.perf_counter()
    while step < steps:
        for real in epochs():
            if step == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start, timed = time.perf_counter(), 0
            real = real.to(device)
            discriminator.zero_grad()
            error_real = F.softplus(-discriminator(real)).mean()
            error_real.backward()
            fake = generator(torch.randn(len(real), latent_dim, device=device))
            error_fake = F.softplus(discriminator(fake.detach())).mean()
            error_fake.backward()
            optimizer_d.step()
            generator.zero_grad()
            error_g = F.softplus(-discriminator(fake)).mean()
            error_g.backward()
            optimizer_g.step()
            if log_every_step:
                _ = (error_real + error_fake).item(), error_g.item()
            step, seen, timed = step + 1, seen + len(real), timed + len(real)
            if step == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return generator.eval(), timed / (time.perf_counter() - start), seen


def shuffled_batches(images: torch.Tensor, batch_size: int, device: torch.device) -> Iterable[torch.Tensor]:
    """One epoch of ``images`` (uint8, on ``device``) in a fresh random order, as
    ``DataLoader(shuffle=True, drop_last=False)`` with ``ToTensor + Normalize(0.5, 0.5)``."""
    order = torch.randperm(len(images))
    for first in range(0, len(images), batch_size):
        yield images[order[first:first + batch_size].to(device)].float().div_(127.5).sub_(1)
