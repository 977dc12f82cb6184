"""atelier.core.models: DCGAN shapes for every resolution, init, and rebuilding from config;
the opt-in spectral-norm discriminator and class-conditional networks."""

from __future__ import annotations

import pytest
import torch

from atelier.core.generate import generate_images
from atelier.core.models import (
    Discriminator,
    Generator,
    GeneratorCheckpoint,
    build_generator,
    load_generator,
)


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


def _calibrated(generator: Generator) -> Generator:
    """``generator`` with batch-norm statistics from one batch, so that its untrained
    eval-mode images span [-1, 1] rather than sitting at 0 (where uint8 rounding hides
    differences)."""
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
    labels = torch.arange(16) % generator.num_classes if generator.num_classes else None
    with torch.no_grad():
        generator.train()(torch.randn(16, generator.latent_dim), labels)
    return generator.eval()


# -- defaults unchanged by the opt-in variants ----------------------------------------------

def test_unconditional_defaults_keep_their_keys_config_and_call():
    generator = Generator(32, 3, latent_dim=8, g_width=4)
    discriminator = Discriminator(32, 3, d_width=4)
    assert generator.config == {"resolution": 32, "channels": 3, "latent_dim": 8, "g_width": 4}
    # The keys every saved DCGAN generator/discriminator has always had: nothing added.
    assert list(generator.state_dict()) == [
        f"main.{i}.{name}"
        for i, kind in enumerate(["conv", "bn", "", "conv", "bn", "", "conv", "bn", "", "conv"])
        for name in {"conv": ["weight"], "bn": ["weight", "bias", "running_mean",
                                                "running_var", "num_batches_tracked"]}.get(kind, [])
    ]
    assert [key for key in discriminator.state_dict() if key.endswith("weight")] == [
        "main.0.weight", "main.2.weight", "main.3.weight", "main.5.weight", "main.6.weight",
        "main.8.weight",
    ]
    assert not any(isinstance(m, torch.nn.Embedding) for m in generator.modules())
    assert generator.main[0].in_channels == 8
    with pytest.raises(ValueError, match="unconditional"):
        generator(torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        discriminator(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


# -- spectral normalisation -----------------------------------------------------------------

def _largest_singular_values(module: torch.nn.Module) -> list[float]:
    with torch.no_grad():
        return [
            torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item()
            for conv in module.modules()
            if isinstance(conv, torch.nn.Conv2d)
        ]


@pytest.mark.parametrize("num_classes", [0, 4])
@pytest.mark.parametrize("resolution", [32, 64])
def test_spectral_norm_discriminator_has_unit_spectral_norm_and_no_batch_norm(
    resolution, num_classes
):
    torch.manual_seed(0)
    discriminator = Discriminator(resolution, 3, d_width=8, spectral_norm=True,
                                  num_classes=num_classes).train()
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == resolution.bit_length() - 2 - (1 if num_classes else 0)
    assert all(torch.nn.utils.parametrize.is_parametrized(conv, "weight") for conv in convs)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in discriminator.modules())
    # The raw (unnormalised) DCGAN weights are far from unit spectral norm.
    raw = [torch.linalg.matrix_norm(c.parametrizations.weight.original.flatten(1), ord=2)
           for c in convs]
    assert all(abs(value.item() - 1) > 0.2 for value in raw)
    images = torch.randn(4, 3, resolution, resolution)
    labels = torch.tensor([0, 1, 2, 3]) if num_classes else None
    for _ in range(30):  # one power iteration per training forward
        logits = discriminator(images, labels)
    assert logits.shape == (4,)
    discriminator.eval()
    assert _largest_singular_values(discriminator) == pytest.approx(
        [1.0] * len(convs), abs=0.1
    )


def test_spectral_norm_under_autocast_and_two_forwards_before_backward():
    torch.manual_seed(0)
    discriminator = Discriminator(32, 3, d_width=4, spectral_norm=True, num_classes=3)
    real, fake = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    labels = torch.tensor([0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # The GAN pattern D(real), D(fake), one backward: u, v change in between.
        loss = discriminator(real, labels).float().mean() - discriminator(fake, labels).float().mean()
    loss.backward()
    # The power-iteration vectors stay float32 buffers (what DDP broadcasts and saves).
    buffers = dict(discriminator.named_buffers())
    assert buffers and all(key.endswith(("_u", "_v")) for key in buffers)
    assert all(value.dtype == torch.float32 for value in buffers.values())
    grads = [p.grad for p in discriminator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# -- class-conditional generator ------------------------------------------------------------

@pytest.mark.parametrize("resolution", [32, 64])
def test_conditional_generator_uses_the_class_embedding(resolution):
    torch.manual_seed(0)
    generator = _calibrated(Generator(resolution, 3, latent_dim=16, g_width=4, num_classes=5))
    assert generator.main[0].in_channels == 2 * 16  # z concatenated with the embedding
    assert generator.config["num_classes"] == 5
    z = torch.randn(3, 16)
    images = generator(z, torch.tensor([1, 1, 1]))
    assert images.shape == (3, 3, resolution, resolution)
    same = generator(z, torch.tensor([1, 1, 1]))
    other = generator(z, torch.tensor([4, 4, 4]))
    assert torch.equal(images, same)
    assert ((images - other).abs().amax(dim=(1, 2, 3)) > 0.1).all()  # every image changes


def test_conditional_generator_refuses_missing_or_bad_labels():
    generator = Generator(32, 1, latent_dim=8, g_width=4, num_classes=3)
    z = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=3\): pass labels"):
        generator(z)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*from 0 to 3"):
        generator(z, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="must lie in"):
        generator(z, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="one label per row"):
        generator(z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class indices"):
        generator(z, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_classes must be"):
        Generator(32, 1, latent_dim=8, g_width=4, num_classes=-1)


def test_build_generator_accepts_configs_with_and_without_num_classes():
    old = {"resolution": 32, "channels": 1, "latent_dim": 8, "g_width": 4}
    assert build_generator(old).num_classes == 0
    rebuilt = build_generator({**old, "num_classes": 7})
    assert rebuilt.num_classes == 7 and rebuilt.config == {**old, "num_classes": 7}
    with pytest.raises(ValueError, match="exactly the keys"):
        build_generator({"resolution": 32, "channels": 1, "latent_dim": 8, "num_classes": 2})
    with pytest.raises(ValueError, match="exactly the keys"):
        build_generator({**old, "num_classes": 2, "spectral_norm": 1})


# -- projection discriminator ---------------------------------------------------------------

@pytest.mark.parametrize("resolution", [32, 64])
def test_projection_discriminator_logit_depends_on_the_label(resolution):
    torch.manual_seed(0)
    discriminator = Discriminator(resolution, 3, d_width=4, num_classes=4).eval()
    images = torch.randn(3, 3, resolution, resolution)
    logits = discriminator(images, torch.tensor([0, 0, 0]))
    assert logits.shape == (3,)
    assert torch.equal(logits, discriminator(images, torch.tensor([0, 0, 0])))
    assert (logits - discriminator(images, torch.tensor([2, 2, 2]))).abs().min() > 0
    # The head is linear(features) + <embed(y), features>, features summed over H x W.
    features = discriminator.main(images).sum(dim=(2, 3))
    expected = (discriminator.head(features).view(-1)
                + (discriminator.class_embedding.weight[1] * features).sum(dim=1))
    assert torch.allclose(discriminator(images, torch.tensor([1, 1, 1])), expected)
    with pytest.raises(ValueError, match="class-conditional"):
        discriminator(images)


def test_gradients_reach_both_class_embeddings():
    torch.manual_seed(0)
    generator = Generator(32, 3, latent_dim=8, g_width=4, num_classes=3)
    discriminator = Discriminator(32, 3, d_width=4, spectral_norm=True, num_classes=3)
    labels = torch.tensor([0, 2, 2, 1])
    discriminator(generator(torch.randn(4, 8), labels), labels).mean().backward()
    g_grad = generator.class_embedding.weight.grad
    d_grad = discriminator.class_embedding.parametrizations.weight.original.grad
    assert g_grad is not None and d_grad is not None
    # Only the rows of the classes in the batch get gradient.
    assert (g_grad.abs().sum(dim=1) > 0).tolist() == [True, True, True]
    assert g_grad.abs().sum() > 0 and d_grad.abs().sum() > 0


# -- checkpoint and generation --------------------------------------------------------------

def test_conditional_generator_round_trips_through_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    generator = Generator(32, 3, latent_dim=8, g_width=4, num_classes=3).eval()
    checkpoint = GeneratorCheckpoint.from_generator(
        generator, step=7, class_names=("cat", "dog", "owl")
    )
    data = checkpoint.to_dict()
    assert data["config"]["num_classes"] == 3 and data["class_names"] == ("cat", "dog", "owl")
    restored = GeneratorCheckpoint.from_dict(data)
    assert restored.class_names == ("cat", "dog", "owl") and restored.step == 7
    checkpoint.save(tmp_path / "generator.pt")
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    for source in (restored, data, tmp_path / "generator.pt"):
        loaded = load_generator(source)
        assert loaded.num_classes == 3
        assert torch.equal(loaded(z, labels), generator(z, labels))
    with pytest.raises(ValueError, match="one name per class"):
        GeneratorCheckpoint.from_generator(generator, class_names=("cat",))


def test_checkpoint_without_class_names_still_loads():
    torch.manual_seed(0)
    generator = Generator(32, 1, latent_dim=8, g_width=4).eval()
    data = GeneratorCheckpoint.from_generator(generator).to_dict()
    del data["class_names"]  # a file written before the field existed
    restored = GeneratorCheckpoint.from_dict(data)
    assert restored.class_names == () and "num_classes" not in restored.config
    z = torch.randn(2, 8)
    assert torch.equal(load_generator(restored)(z), generator(z))


def test_generate_images_passes_one_label_per_seed_in_the_same_batches():
    torch.manual_seed(0)
    generator = _calibrated(Generator(32, 3, latent_dim=8, g_width=4, num_classes=3))
    seeds, labels = [11, 12, 13, 14, 15], [0, 2, 1, 2, 0]
    images = generate_images(generator, seeds, batch_size=2, device="cpu", labels=labels)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    # Batching does not matter, and each image follows its own label.
    assert torch.equal(images, generate_images(generator, seeds, batch_size=5, labels=labels))
    relabelled = generate_images(generator, seeds, batch_size=2, labels=[1, 2, 1, 0, 0])
    assert [torch.equal(a, b) for a, b in zip(images, relabelled, strict=True)] == [
        False, True, True, False, True
    ]
    with pytest.raises(ValueError, match="one label per seed"):
        generate_images(generator, seeds, labels=[0, 1])
    with pytest.raises(ValueError, match="pass labels"):
        generate_images(generator, seeds)
    # Unconditional generators are called as before.
    plain = Generator(32, 3, latent_dim=8, g_width=4)
    assert generate_images(plain, seeds).shape == (5, 3, 32, 32)
