"""DiffAugment's contract in ``train_gan``: what the discriminator receives, pass by pass.

Every image the discriminator sees (the D step's reals and fakes, the R1 reals, the G step's
fakes) goes through the same policy with the same per-image probability
``training.augment_p``, with independent draws per image and per pass, from a stream
reseeded per step (so a resumed run augments exactly as an uninterrupted one). The
discriminator's ``forward`` is instrumented, and the generator's training forward too
(``training_cases.record_training_passes``): with ``cutout`` alone, an image went through
the transform exactly when a block of pixels that were not 0 before is 0 in every channel
(``training_cases.cut_out``; real pixels are ``k / 127.5 - 1`` for integer k, never 0; a
young generator's output can hold exact zeros, so fakes are compared with the generator's
output of that step).
"""

from __future__ import annotations

import pytest
import torch
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    assert_identical,
    cut_out,
    one_thread,
    record_training_passes,
    synthetic_images,
    tiny_params,
)

from atelier.core.training import TrainingConfig, train_gan

PASSES = ("d_real", "d_fake", "r1_real", "g_fake")  # the order of D's calls in one step
STEPS, BATCH = 24, 16


_RECORDED: dict[float, dict[str, list[torch.Tensor]]] = {}


def _train_recording(tmp_path, augment_p: float) -> dict[str, list[torch.Tensor]]:
    """Per pass, per step: which images the discriminator received cut out (one training
    per probability, shared by the tests of this module)."""
    if augment_p not in _RECORDED:
        _RECORDED[augment_p] = _recorded_training(tmp_path, augment_p)
    return _RECORDED[augment_p]


def _recorded_training(tmp_path, augment_p: float) -> dict[str, list[torch.Tensor]]:
    seen, generated = [], []
    params = tiny_params(tmp_path, max_steps=STEPS, batch_size=BATCH, augment="cutout",
                         augment_p=augment_p, r1_gamma=1.0, r1_every=1, spectral_norm=True,
                         loss="hinge", checkpoint_every=0)
    with pytest.MonkeyPatch.context() as monkeypatch:
        record_training_passes(monkeypatch, seen, generated)
        train_gan(synthetic_images(64, channels=3), TrainingConfig.from_params(params),
                  data_hash=DATA_HASH)
    # D real, D fake, R1, G: nothing else calls D; one generator forward per step.
    assert len(seen) == STEPS * len(PASSES) and len(generated) == STEPS
    passes = {name: seen[i::len(PASSES)] for i, name in enumerate(PASSES)}
    return {name: [cut_out(batch, generated[step] if "fake" in name else None)
                   for step, batch in enumerate(inputs)] for name, inputs in passes.items()}


@pytest.mark.parametrize("augment_p", [1.0, 0.5])
def test_every_pass_of_the_discriminator_is_augmented_at_the_same_rate(tmp_path, augment_p):
    passes = _train_recording(tmp_path, augment_p)
    images_per_pass = STEPS * BATCH
    # A binomial(384, p) rate lies within 4.5 standard deviations with near certainty.
    tolerance = 4.5 * (augment_p * (1 - augment_p) / images_per_pass) ** 0.5
    for name, inputs in passes.items():
        rate = float(torch.cat(inputs).float().mean())
        assert abs(rate - augment_p) <= tolerance, (name, rate, augment_p)


def test_each_pass_draws_its_own_augmentation(tmp_path):
    passes = _train_recording(tmp_path, 0.5)
    # The G step re-augments the D step's fakes (the same images) and R1 the D step's reals,
    # each with fresh draws: which images are cut out differs from one pass to the next.
    for first, second in (("d_fake", "g_fake"), ("d_real", "r1_real")):
        differing = sum(not torch.equal(a, b) for a, b in zip(passes[first], passes[second], strict=True))
        assert differing >= STEPS - 2, (first, second, differing)


def test_resume_with_augmentation_matches_the_uninterrupted_run(tmp_path):
    images = synthetic_images(channels=3)
    settings = {"augment": "color,translation,cutout", "augment_p": 0.6, "r1_gamma": 0.5,
                "r1_every": 2, "spectral_norm": True, "loss": "hinge"}
    uninterrupted = train_gan(
        images, TrainingConfig.from_params(tiny_params(tmp_path / "u", **settings)),
        data_hash=DATA_HASH)
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "r", max_steps=4, **settings)),
              data_hash=DATA_HASH)
    resumed = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "r", **settings)),
                        data_hash=DATA_HASH)
    assert resumed.resumed_from.name == "step_00000004.pt"
    assert_identical(uninterrupted.generator.state_dict(), resumed.generator.state_dict())


def test_augment_p_outside_the_unit_interval_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"augment_p must be in \[0, 1\], got 1.5"):
        TrainingConfig.from_params(tiny_params(tmp_path, augment_p=1.5))
