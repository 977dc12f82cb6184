"""Spectral norm (``atelier.core.layers.SpectralNorm``) in both discriminators: the numbers of
torch's own parametrization, one power iteration per training forward and none in eval, and
FastGAN with spectral norm trained under torch.compile through the training loop (which
used to fail in D's backward with "modified by an inplace operation")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    checkpoints,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core import fastgan, models
from atelier.core.fastgan import FastGANDiscriminator
from atelier.core.layers import SpectralNorm
from atelier.core.models import build_discriminator
from atelier.core.training import TrainingConfig, train_gan

FASTGAN_SN = {"architecture": "fastgan", "spectral_norm": True, "loss": "hinge"}


def _torch_spectral_norm(network: nn.Module) -> None:
    """What both discriminators applied before SpectralNorm: torch's parametrization."""
    for module in list(network.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(module)


def _discriminator_steps(discriminator: nn.Module, steps: int = 2) -> None:
    """D steps as the loop takes them: D(real) (FastGAN: with its decoders) and D(fake) in
    one graph, one backward, an SGD step."""
    optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.1)
    stream = torch.Generator().manual_seed(1)
    num_classes = discriminator.num_classes
    for step in range(steps):
        real, fake = torch.randn(2, 4, 3, 32, 32, generator=stream)
        labels = torch.arange(4) % num_classes if num_classes else None
        if isinstance(discriminator, FastGANDiscriminator):
            real_logits, reconstruction = discriminator(real, labels, quarter=step % 4)
        else:
            real_logits, reconstruction = discriminator(real, labels), 0
        loss = F.softplus(-real_logits).mean() + F.softplus(discriminator(fake, labels)).mean()
        optimizer.zero_grad()
        (loss + reconstruction).backward()
        optimizer.step()


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("architecture", ["fastgan", "dcgan"])
def test_spectral_norm_gives_torchs_numbers_bit_for_bit(monkeypatch, architecture, num_classes):
    """The same initial u and v (random draws included), state-dict keys, and weights and
    buffers after training steps as torch.nn.utils.parametrizations.spectral_norm."""
    def build() -> nn.Module:
        torch.manual_seed(0)
        return build_discriminator(architecture, 32, 3, 4, True, num_classes)

    ours = build()
    monkeypatch.setattr(fastgan, "apply_spectral_norm", _torch_spectral_norm)
    monkeypatch.setattr(models, "apply_spectral_norm", _torch_spectral_norm)
    reference = build()
    assert any(isinstance(module, SpectralNorm) for module in ours.modules())
    assert not any(isinstance(module, SpectralNorm) for module in reference.modules())
    for discriminator in (ours, reference):
        _discriminator_steps(discriminator)
    ours_state, reference_state = ours.state_dict(), reference.state_dict()
    assert list(ours_state) == list(reference_state)
    assert any(key.endswith("parametrizations.weight.0._u") for key in ours_state)
    for key, value in reference_state.items():
        assert torch.equal(ours_state[key], value), key


def _normalized(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=0, eps=1e-12)


def test_u_and_v_take_one_power_iteration_per_training_forward_and_none_in_eval():
    torch.manual_seed(0)
    discriminator = FastGANDiscriminator(32, 3, d_width=4)
    layers = {name: module.parametrizations.weight for name, module in discriminator.named_modules()
              if parametrize.is_parametrized(module)}
    assert len(layers) == 13  # every convolution, 5 of them in the decoders
    vectors = {name: (layer[0]._u, layer[0]._v) for name, layer in layers.items()}
    expected = {name: (u.clone(), v.clone()) for name, (u, v) in vectors.items()}

    def iterate(names) -> None:
        for name in names:
            weight, (u, v) = layers[name].original.detach().flatten(1), expected[name]
            u = _normalized(torch.mv(weight, v))
            expected[name] = (u, _normalized(torch.mv(weight.t(), u)))

    def check() -> None:
        for name, (u, v) in vectors.items():
            assert torch.equal(u, expected[name][0]) and torch.equal(v, expected[name][1]), name

    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, reconstruction = discriminator(images, quarter=2)  # every layer once
    iterate(layers)
    check()
    discriminator(images)  # the decoders do not run, so their vectors stay
    iterate([name for name in layers if "decoder" not in name])
    check()
    (logits.mean() + reconstruction).backward()  # the first forward's graph is still valid
    discriminator.eval()
    discriminator(images, quarter=0)
    check()
    for name, (u, v) in vectors.items():  # updated in place: DDP holds these very tensors
        assert layers[name][0]._u is u and layers[name][0]._v is v


def test_compile_is_accepted_with_fastgan_and_spectral_norm(tmp_path):
    config = TrainingConfig.from_params(tiny_params(tmp_path, compile=True, **FASTGAN_SN))
    assert config.compile and config.spectral_norm and config.architecture == "fastgan"


@pytest.mark.slow
def test_fastgan_with_spectral_norm_trains_under_compile(tmp_path, monkeypatch):
    """Two steps through train_gan with torch.compile (a few minutes of compiling on CPU):
    finite losses close to the uncompiled run's, weights and u / v that move."""
    compiled = []
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or compile_(model))
    images = synthetic_images(channels=3)
    overrides = {"max_steps": 2, "batch_size": 4, "log_every": 1, "checkpoint_every": 1,
                 **FASTGAN_SN}
    result = train_gan(images, TrainingConfig.from_params(
        tiny_params(tmp_path / "compiled", compile=True, **overrides)), data_hash=DATA_HASH)
    assert len(compiled) == 3  # G, D for its step, D for G's step
    eager = train_gan(images, TrainingConfig.from_params(
        tiny_params(tmp_path / "eager", compile=False, **overrides)), data_hash=DATA_HASH)
    for row, eager_row in zip(result.history, eager.history, strict=True):
        for key in ("loss_d", "loss_g"):
            assert torch.isfinite(torch.tensor(row[key])), row
            assert row[key] == pytest.approx(eager_row[key], rel=1e-3), (key, row, eager_row)
    first, second = (torch.load(path, weights_only=True)
                     for path in checkpoints(tmp_path / "compiled"))
    for network in ("generator", "discriminator"):
        for key, value in second[network].items():
            assert torch.isfinite(value).all(), key
        changed = {key for key, value in second[network].items()
                   if value.is_floating_point() and not torch.equal(value, first[network][key])}
        assert any(key.endswith("weight.original") or key.endswith(".weight") for key in changed)
    changed_d = {key for key, value in second["discriminator"].items()
                 if not torch.equal(value, first["discriminator"][key])}
    assert any(key.endswith("._u") for key in changed_d)
    assert any(key.endswith("._v") for key in changed_d)
