"""FastGAN through the training loop: resume, determinism, ADA, DDP, precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    assert_identical,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core.fastgan import FastGANGenerator
from atelier.core.models import GeneratorCheckpoint, load_generator
from atelier.core.training import TrainingConfig, launch_training, train_gan

# FastGAN with its studio companions: adaptive augmentation moving fast enough to show in
# ten steps of eight images (1 / (0.02 * 1000) = 0.05 per adjustment), hinge loss, SN.
FASTGAN = {"architecture": "fastgan", "augment": "color,translation", "augment_p": 0.2,
           "ada": True, "ada_kimg": 0.02, "loss": "hinge", "spectral_norm": True}


def _train(tmp_path, **overrides):
    params = tiny_params(tmp_path, **{**FASTGAN, **overrides})
    return train_gan(synthetic_images(channels=3), TrainingConfig.from_params(params),
                     data_hash=DATA_HASH)


@pytest.mark.slow  # FastGAN training and resume
def test_fastgan_trains_logs_p_and_resumes_bit_identically(tmp_path, caplog):
    with caplog.at_level("INFO", logger="atelier.core.training"):
        uninterrupted = _train(tmp_path / "u")
    assert isinstance(uninterrupted.generator, FastGANGenerator)
    assert "fastgan networks: generator" in caplog.text and "discriminator" in caplog.text
    ps = [row["augment_p"] for row in uninterrupted.history]
    assert len(ps) == 5 and len(set(ps)) > 1, ps  # p moved, and was logged every interval
    assert uninterrupted.augment_p == ps[-1]
    _train(tmp_path / "r", max_steps=4)
    resumed = _train(tmp_path / "r")
    assert resumed.resumed_from.name == "step_00000004.pt"
    assert_identical(uninterrupted.generator.state_dict(), resumed.generator.state_dict())
    assert [row["augment_p"] for row in resumed.history] == ps  # p continued, not reset
    checkpoint = torch.load(resumed.resumed_from, weights_only=True)
    assert set(checkpoint["ada"]) >= {"p", "last_rt"} and checkpoint["ada"]["p"] == ps[1]


def test_the_trained_fastgan_saves_loads_and_draws_the_same_images(tmp_path):
    result = _train(tmp_path, max_steps=4)
    path = tmp_path / "generator.pt"
    result.checkpoint.save(path)
    assert GeneratorCheckpoint.load(path).config["architecture"] == "fastgan"
    loaded = load_generator(path)
    z = torch.randn(3, loaded.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(z), result.generator(z))  # eval: no noise, a fixed function


def test_architecture_and_ada_shape_the_checkpoint_key():
    base = tiny_params(Path("."))
    key = TrainingConfig.from_params(base).checkpoint_key(DATA_HASH, 32, 3, 0)
    for change in ({"architecture": "fastgan"}, {"ada": True, "augment": "color"},
                   {"ada_kimg": 50}, {"ada_target": 0.7}):
        assert TrainingConfig.from_params({**base, **change}).checkpoint_key(
            DATA_HASH, 32, 3, 0) != key, change


@pytest.mark.parametrize(("change", "message"), [
    ({"architecture": "stylegan"}, "architecture must be one of"),
    ({"ada": True, "augment": "none"}, "ada is on but augment is none"),
    ({"ada_target": 1.0}, "ada_target must be in"),
    ({"ada_kimg": 0}, "ada_kimg must be positive"),
])
def test_bad_architecture_and_ada_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_params({**tiny_params(Path(".")), **change})


def test_fastgan_refuses_16_pixels_before_training(tmp_path):
    with pytest.raises(ValueError, match="FastGAN needs a power-of-two resolution of at least 32"):
        train_gan(synthetic_images(channels=3, resolution=16), TrainingConfig.from_params(
            tiny_params(tmp_path, **FASTGAN)), data_hash=DATA_HASH)


@pytest.mark.slow  # bf16 FastGAN training on a CPU
def test_conditional_fastgan_under_bf16_autocast(tmp_path):
    labels = torch.arange(48) % 3
    params = tiny_params(tmp_path, max_steps=4, precision="bf16", conditional=True, **FASTGAN)
    result = train_gan(synthetic_images(channels=3), TrainingConfig.from_params(params),
                       data_hash=DATA_HASH, labels=labels)
    assert result.generator.num_classes == 3
    assert all(torch.isfinite(value).all() for value in result.generator.state_dict().values())


@pytest.mark.slow
def test_two_gloo_ranks_train_fastgan_with_ada(tmp_path):
    """DDP over FastGAN: the decoders take part in the D step's forward (no unused
    parameters), and ADA's r_t is summed over the ranks, so both end with the same p."""
    params = tiny_params(tmp_path, max_steps=4, checkpoint_every=0, devices=2, **FASTGAN)
    result = launch_training(synthetic_images(channels=3), TrainingConfig.from_params(params),
                             data_hash=DATA_HASH)
    assert result.step == 4 and isinstance(result.generator, FastGANGenerator)
    assert all(torch.isfinite(value).all() for value in result.generator.state_dict().values())
    assert result.augment_p is not None
