"""atelier.core.models: DCGAN shapes for every resolution, init, and rebuilding from config."""

from __future__ import annotations

import pytest
import torch

from atelier.core.models import Discriminator, Generator, build_generator


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_shapes_for_each_resolution_and_channel_count(resolution, channels):
    generator = Generator(resolution, channels, latent_dim=16, g_width=4)
    discriminator = Discriminator(resolution, channels, d_width=4)
    images = generator(torch.randn(2, 16))
    assert images.shape == (2, channels, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1  # tanh
    assert discriminator(images).shape == (2,)
    # Each doubling of the resolution adds one up-sampling layer.
    transposed = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(transposed) == resolution.bit_length() - 2  # 4x4 stem + one per doubling
    # The widest layer is 8 x width, as in the DCGAN paper's 64 x 64 model.
    assert max(m.out_channels for m in transposed) == min(8, resolution // 8) * 4


def test_dcgan_initialisation():
    torch.manual_seed(0)
    generator = Generator(64, 3, latent_dim=100, g_width=64)
    conv = generator.main[3].weight
    norm = generator.main[4]
    assert abs(conv.mean().item()) < 1e-3 and conv.std().item() == pytest.approx(0.02, rel=0.05)
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert norm.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert torch.count_nonzero(norm.bias) == 0


def test_build_generator_rebuilds_the_architecture_from_its_config():
    torch.manual_seed(0)
    trained = Generator(32, 1, latent_dim=8, g_width=4).eval()
    rebuilt = build_generator(trained.config)
    rebuilt.load_state_dict(trained.state_dict())
    rebuilt.eval()
    z = torch.randn(3, 8)
    assert rebuilt.latent_dim == 8
    assert torch.equal(rebuilt(z), trained(z))
    with pytest.raises(ValueError, match="exactly the keys"):
        build_generator({**trained.config, "d_width": 4})


@pytest.mark.parametrize("resolution, channels", [(48, 1), (8, 1), (32, 2)])
def test_unsupported_shapes_are_refused(resolution, channels):
    with pytest.raises(ValueError, match="power-of-two|channels must be"):
        Generator(resolution, channels, latent_dim=8, g_width=4)
