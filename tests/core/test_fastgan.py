"""atelier.core.fastgan: FastGAN shapes for every resolution, skip-layer excitation, the
self-supervised reconstruction loss, refusals, determinism and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.core.fastgan import (
    FastGANDiscriminator,
    FastGANGenerator,
    NoiseInjection,
    sle_pairs,
    stage_width,
)
from atelier.core.layers import parameter_count

LATENT = 8


def _labels(num_classes: int, batch: int = 2) -> torch.Tensor | None:
    return torch.arange(batch) % num_classes if num_classes else None


def _smooth_images(channels: int = 3, resolution: int = 32, batch: int = 2) -> torch.Tensor:
    """Images with structure a small decoder can learn: up-sampled 4 x 4 noise in [-1, 1]."""
    low = torch.rand(batch, channels, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return F.interpolate(low, size=resolution, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_shapes_and_range_for_each_resolution(resolution, channels, num_classes):
    torch.manual_seed(0)
    generator = FastGANGenerator(resolution, channels, LATENT, g_width=4, num_classes=num_classes)
    discriminator = FastGANDiscriminator(resolution, channels, d_width=4, num_classes=num_classes)
    labels = _labels(num_classes)
    images = generator(torch.randn(2, LATENT), labels)
    assert images.shape == (2, channels, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1  # tanh
    assert discriminator(images, labels).shape == (2,)
    logits, loss = discriminator.forward_with_reconstruction(images, labels)
    assert logits.shape == (2,) and loss.shape == () and torch.isfinite(loss)
    assert len(generator.excitations) == len(sle_pairs(resolution))


def test_sle_pairing_and_width_rule():
    assert sle_pairs(32) == [(8, 32)]
    assert sle_pairs(64) == [(8, 32), (8, 64)]
    assert sle_pairs(128) == [(8, 32), (8, 64), (8, 128)]
    assert sle_pairs(256) == [(8, 64), (8, 128), (16, 256)]
    assert sle_pairs(512) == [(8, 128), (16, 256), (32, 512)]  # the paper's pairs
    assert [stage_width(s, 64) for s in (4, 8, 16, 32, 64, 128, 256)] == [
        1024, 512, 256, 128, 64, 32, 32]
    generator = FastGANGenerator(64, 3, LATENT, g_width=8)
    assert generator.stem[0].out_channels == 2 * 128  # GLU halves it to 16 x g_width


def _calibrated(generator: FastGANGenerator) -> FastGANGenerator:
    """``generator`` in eval mode (fixed batch-norm statistics, so that a gate scaling every
    channel is not normalised away) with the statistics of one batch, so that its untrained
    images are not all near 0."""
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        generator.train()(torch.randn(16, LATENT))
    return generator.eval()


@pytest.mark.parametrize("name", ["8_to_64", "8_to_32"])
def test_skip_layer_excitation_gates_the_high_resolution_features(name):
    torch.manual_seed(0)
    generator = _calibrated(FastGANGenerator(64, 3, LATENT, g_width=4))
    excitation = generator.excitations[name]
    for conv in excitation.gate[1], excitation.gate[3]:  # at init every gate is near 0.5:
        torch.nn.init.normal_(conv.weight, 0.0, 0.5)  # make it depend visibly on the source
    z = torch.randn(2, LATENT)
    seen = {}

    def record(module, args, output):
        seen["source"], seen["target"], seen["output"] = *args, output

    handle = excitation.register_forward_hook(record)
    with torch.no_grad():
        reference = generator(z)
    handle.remove()
    gate = seen["output"] / seen["target"]
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)  # per channel
    assert gate.min() > 0 and gate.max() < 1 and gate.std() > 0
    handle = excitation.register_forward_pre_hook(
        lambda module, args: (torch.zeros_like(args[0]), args[1]))
    with torch.no_grad():
        zeroed = generator(z)
    handle.remove()
    assert (zeroed - reference).abs().max() > 0.05 * reference.abs().max()


def test_reconstruction_loss_falls_when_training_the_discriminator_on_it():
    torch.manual_seed(0)
    discriminator = FastGANDiscriminator(32, 3, d_width=8)
    images = _smooth_images()
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    quarters = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        _, loss = discriminator.forward_with_reconstruction(images, generator=quarters)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.6 * first, losses  # about 0.3 * first in practice


@pytest.mark.parametrize("resolution", [48, 16, 8, 33])
def test_unsupported_resolutions_are_refused(resolution):
    with pytest.raises(ValueError, match="preprocessing.resolution.*at least 32"):
        FastGANGenerator(resolution, 3, LATENT, g_width=4)
    with pytest.raises(ValueError, match="preprocessing.resolution"):
        FastGANDiscriminator(resolution, 3, d_width=4)


def test_unsupported_channels_and_quarters_are_refused():
    with pytest.raises(ValueError, match="channels must be 1"):
        FastGANGenerator(32, 2, LATENT, g_width=4)
    with pytest.raises(ValueError, match="channels must be 1"):
        FastGANDiscriminator(32, 2, d_width=4)
    discriminator = FastGANDiscriminator(32, 3, d_width=4)
    with pytest.raises(ValueError, match="quarter must be"):
        discriminator.forward_with_reconstruction(torch.zeros(2, 3, 32, 32), quarter=4)


def test_labels_are_required_by_conditional_networks_and_refused_by_unconditional_ones():
    generator = FastGANGenerator(32, 3, LATENT, g_width=4, num_classes=3)
    discriminator = FastGANDiscriminator(32, 3, d_width=4, num_classes=3)
    images = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match="class-conditional"):
        generator(torch.randn(2, LATENT))
    with pytest.raises(ValueError, match="class-conditional"):
        discriminator(images)
    with pytest.raises(ValueError, match="class-conditional"):
        discriminator.forward_with_reconstruction(images)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        generator(torch.randn(2, LATENT), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        FastGANGenerator(32, 3, LATENT, g_width=4)(torch.randn(2, LATENT), torch.tensor([0, 1]))


def _run_once(seed: int) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(seed)
    generator = FastGANGenerator(32, 3, LATENT, g_width=4)
    for module in generator.modules():
        if isinstance(module, NoiseInjection):
            torch.nn.init.ones_(module.weight)  # make the noise count
    discriminator = FastGANDiscriminator(32, 3, d_width=4)
    images = generator(torch.randn(2, LATENT))
    logits, loss = discriminator.forward_with_reconstruction(images)
    return images, logits, loss


def test_same_seed_same_networks_and_outputs():
    first, second = _run_once(0), _run_once(0)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(_run_once(1)[0], first[0])


def test_noise_is_drawn_in_training_from_its_stream_and_never_in_eval():
    torch.manual_seed(0)
    generator = FastGANGenerator(32, 1, LATENT, g_width=4)
    noises = [m for m in generator.modules() if isinstance(m, NoiseInjection)]
    assert len(noises) == 3 and all(torch.count_nonzero(m.weight) == 0 for m in noises)
    for module in noises:
        torch.nn.init.ones_(module.weight)
    z = torch.randn(2, LATENT)
    generator.eval()  # a fixed function of the latent: the same image for the same seed
    torch.manual_seed(1)
    first = generator(z)
    torch.manual_seed(2)
    assert torch.equal(first, generator(z))
    generator.train()
    stream = torch.Generator()
    generator.set_noise_stream(stream)
    outputs = []
    for seed in (5, 5, 6):
        stream.manual_seed(seed)
        torch.manual_seed(seed * 7)  # the default RNG plays no part
        outputs.append(generator(z))
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    generator.set_noise_stream(None)  # back to torch's default RNG
    torch.manual_seed(3)
    again = generator(z)
    torch.manual_seed(3)
    assert torch.equal(again, generator(z))


@pytest.mark.parametrize("num_classes", [0, 3])
def test_every_discriminator_parameter_gets_a_gradient(num_classes):
    torch.manual_seed(0)
    discriminator = FastGANDiscriminator(32, 3, d_width=4, num_classes=num_classes)
    logits, loss = discriminator.forward_with_reconstruction(
        _smooth_images(), _labels(num_classes))
    (logits.sum() + loss).backward()
    missing = [name for name, p in discriminator.named_parameters()
               if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert missing == []
    spectral = [name for name, _ in discriminator.named_parameters() if "parametrizations" in name]
    normalised = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)
    assert len(spectral) == sum(isinstance(m, normalised) for m in discriminator.modules())


def test_autocast_channels_last_and_train_eval_modes():
    torch.manual_seed(0)
    generator = FastGANGenerator(64, 3, LATENT, g_width=4, num_classes=2)
    discriminator = FastGANDiscriminator(64, 3, d_width=4, num_classes=2)
    generator.to(memory_format=torch.channels_last)
    discriminator.to(memory_format=torch.channels_last)
    labels = _labels(2)
    for train in (True, False):
        generator.train(train)
        discriminator.train(train)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            images = generator(torch.randn(2, LATENT), labels)
            logits, loss = discriminator.forward_with_reconstruction(
                images.contiguous(memory_format=torch.channels_last), labels, quarter=3)
        assert images.shape == (2, 3, 64, 64) and logits.shape == (2,)
        assert torch.isfinite(images).all() and torch.isfinite(logits).all()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("num_classes", [0, 4])
def test_generator_config_round_trips_into_its_constructor(num_classes):
    torch.manual_seed(0)
    trained = FastGANGenerator(64, 1, LATENT, g_width=4, num_classes=num_classes).eval()
    config = dict(trained.config)
    assert config.pop("architecture") == "fastgan" == FastGANGenerator.architecture
    assert ("num_classes" in config) == bool(num_classes)
    rebuilt = FastGANGenerator(**config)
    rebuilt.load_state_dict(trained.state_dict())
    rebuilt.eval()
    z, labels = torch.randn(3, LATENT), _labels(num_classes, 3)
    assert torch.equal(rebuilt(z, labels), trained(z, labels))
    assert rebuilt.config == trained.config


def test_discriminator_config_and_parameter_count():
    discriminator = FastGANDiscriminator(32, 3, d_width=4, num_classes=2, spectral_norm=False)
    assert discriminator.config == {"architecture": "fastgan", "resolution": 32, "channels": 3,
                                    "d_width": 4, "num_classes": 2, "spectral_norm": False}
    config = dict(discriminator.config)
    del config["architecture"]
    assert FastGANDiscriminator(**config).config == discriminator.config
    assert FastGANDiscriminator(32, 1, d_width=4).config == {
        "architecture": "fastgan", "resolution": 32, "channels": 1, "d_width": 4}
    assert parameter_count(discriminator) == sum(
        p.numel() for p in discriminator.parameters())
    assert parameter_count(FastGANDiscriminator(32, 3, d_width=4)) == parameter_count(
        FastGANDiscriminator(32, 3, d_width=4, spectral_norm=False))


def test_dcgan_initialisation():
    torch.manual_seed(0)
    generator = FastGANGenerator(32, 3, LATENT, g_width=16)
    conv, norm = generator.blocks[0][1].weight, generator.blocks[0][3]
    assert conv.std().item() == pytest.approx(0.02, rel=0.05)
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.count_nonzero(norm.bias) == 0
