"""atelier.core.training.steps and .batches: R1, the EMA horizon, sampling without replacement."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from training_cases import synthetic_images, tiny_params

from atelier.core.augment import diff_augment
from atelier.core.training.batches import Batches
from atelier.core.training.config import TrainingConfig
from atelier.core.training.steps import MovingAverage, r1_penalty


class _Linear(nn.Module):
    """D(x) = sum(w * x): its input gradient is w for every image."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, images, labels=None):
        return (images * self.weight).flatten(1).sum(1)


class _Square(nn.Module):
    """D(x) = sum(x^2) / 2: its input gradient is x."""

    def forward(self, images, labels=None):
        return images.square().flatten(1).sum(1) / 2


def test_r1_is_the_squared_input_gradient_norm_of_known_functions():
    weight = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    real = torch.randn(5, 3, 4, 4)
    penalty = r1_penalty(_Linear(weight), real, None, lambda x: x)
    assert penalty.item() == pytest.approx(weight.square().sum().item(), rel=1e-5)
    penalty = r1_penalty(_Square(), real, None, lambda x: x)
    assert penalty.item() == pytest.approx(real.square().sum((1, 2, 3)).mean().item(), rel=1e-5)


def test_r1_trains_the_discriminator_and_follows_the_augmentation():
    weight = torch.randn(1, 1, 8, 8)
    discriminator = _Linear(weight.clone())
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    penalty = r1_penalty(discriminator, real, None,
                         lambda x: diff_augment(x, "translation", torch.Generator().manual_seed(1)))
    penalty.backward()  # create_graph: the penalty has a gradient with respect to D's weights
    assert discriminator.weight.grad is not None and discriminator.weight.grad.abs().sum() > 0
    # Through a translation, some of w's pixels fall outside the image: less than ||w||^2.
    assert 0 < penalty.item() < weight.square().sum().item()


def test_ema_horizon_is_in_images_with_a_ramp_up():
    g = nn.Linear(2, 2)
    ema = MovingAverage(nn.Linear(2, 2), g, ema_kimg=10, ema_rampup=0.05, batch_size=64)
    # Ramp-up: after 64,000 images the horizon is 3,200 images, so beta = 0.5 ** (64 / 3200).
    assert ema.beta(64_000) == pytest.approx(0.5 ** (64 / 3_200))
    # Later it is capped at ema_kimg: the weights of 10,000 images ago count half.
    assert ema.beta(10_000_000) == pytest.approx(0.5 ** (64 / 10_000))
    assert ema.beta(10_000_000) ** (10_000 / 64) == pytest.approx(0.5)
    flat = MovingAverage(nn.Linear(2, 2), g, ema_kimg=10, ema_rampup=0, batch_size=64)
    assert flat.beta(64) == pytest.approx(0.5 ** (64 / 10_000))
    assert MovingAverage(nn.Linear(2, 2), g, 0, 0, 64).beta(64) == 0.0  # no averaging


def test_ema_update_moves_the_average_towards_the_source():
    source, average = nn.Linear(2, 2), nn.Linear(2, 2)
    before = average.weight.detach().clone()
    ema = MovingAverage(average, source, ema_kimg=1, ema_rampup=0, batch_size=500)
    ema.update(images_seen=500)
    beta = 0.5 ** (500 / 1000)
    expected = beta * before + (1 - beta) * source.weight.detach()
    assert torch.allclose(average.weight, expected)


def test_batches_see_every_image_once_per_epoch_and_resume_identically(tmp_path):
    images = synthetic_images(count=20)
    config = TrainingConfig.from_params(tiny_params(tmp_path, batch_size=8))
    batches = Batches(images, None, 0, 1, torch.device("cpu"), config, torch.contiguous_format)
    drawn = torch.cat([batches._indices(step) for step in range(1, 6)])  # 40 draws, 2 epochs
    assert sorted(drawn[:20].tolist()) == list(range(20))  # epoch 1: each image once
    assert sorted(drawn[20:].tolist()) == list(range(20))  # epoch 2: each image once
    assert drawn[:20].tolist() != drawn[20:].tolist()  # reshuffled
    fresh = Batches(images, None, 0, 1, torch.device("cpu"), config, torch.contiguous_format)
    real, labels, z = fresh.draw(4)  # a resumed run draws step 4 as the uninterrupted one did
    again = batches.draw(4)
    assert torch.equal(real, again[0]) and torch.equal(z, again[2]) and labels is None
    assert real.shape == (8, 1, 32, 32) and -1 <= real.min() and real.max() <= 1


def test_recalibrated_batchnorm_statistics_describe_the_current_weights():
    from atelier.core.models import Generator
    from atelier.core.training.steps import recalibrate_batchnorm

    torch.manual_seed(0)
    generator = Generator(32, 3, 16, 8).eval()
    first_norm = next(m for m in generator.modules() if isinstance(m, nn.BatchNorm2d))
    first_norm.running_mean.fill_(5.0)  # statistics that belong to other weights
    recalibrate_batchnorm(generator, batches=4, batch_size=16, seed=3)
    assert not generator.training and first_norm.momentum == 0.1  # mode and momentum restored
    # The first layer's statistics are the mean of its pre-norm activations over the same
    # seeded latents, as a plain average over the 4 batches.
    stream = torch.Generator().manual_seed(3)
    z = torch.cat([torch.randn(16, 16, generator=stream) for _ in range(4)])
    with torch.no_grad():
        activations = generator.main[0](z.view(64, 16, 1, 1))
    assert torch.allclose(first_norm.running_mean, activations.mean((0, 2, 3)), atol=1e-5)
    snapshot = {k: v.clone() for k, v in generator.state_dict().items()}
    recalibrate_batchnorm(generator, batches=4, batch_size=16, seed=3)
    assert all(torch.equal(v, generator.state_dict()[k]) for k, v in snapshot.items())
