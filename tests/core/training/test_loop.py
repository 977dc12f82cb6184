"""atelier.core.training.loop: determinism, precision, reporting, the NaN guard, the result."""

from __future__ import annotations

import io
import re

import pytest
import torch
import torch.nn.functional as F
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    assert_identical,
    checkpoints,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core.errors import TrainingDivergedError
from atelier.core.generate import generate_images
from atelier.core.models import GeneratorCheckpoint, load_generator
from atelier.core.training import TrainingConfig, loop, train_gan

# ------------------------------------------------------------------------- determinism

def test_same_seed_gives_bit_identical_weights_and_other_seed_does_not(tmp_path):
    images = synthetic_images()
    results = [
        train_gan(images, TrainingConfig.from_params(
            tiny_params(tmp_path / name, seed=seed, flip=True, loss=loss)), data_hash=DATA_HASH)
        for name, seed, loss in (("a", 0, "bce"), ("b", 0, "bce"), ("c", 1, "bce"), ("d", 0, "hinge"))
    ]
    first, same, other_seed, hinge = (r.generator.state_dict() for r in results)
    assert_identical(first, same)
    assert results[0].history == [
        {**row, "images_per_sec": results[0].history[i]["images_per_sec"]}
        for i, row in enumerate(results[1].history)
    ]
    assert not torch.equal(first["main.0.weight"], other_seed["main.0.weight"])
    assert not torch.equal(first["main.0.weight"], hinge["main.0.weight"])


def test_bf16_autocast_is_deterministic_too(tmp_path):
    images = synthetic_images()
    bf16 = [
        train_gan(images, TrainingConfig.from_params(tiny_params(
            tmp_path / name, precision="bf16", g_width=8, d_width=8, max_steps=4)), data_hash=DATA_HASH)
        for name in ("a", "b")
    ]
    assert_identical(bf16[0].generator.state_dict(), bf16[1].generator.state_dict())
    assert all(torch.isfinite(value).all() for value in bf16[0].generator.state_dict().values())
    fp32 = train_gan(images, TrainingConfig.from_params(tiny_params(
        tmp_path / "c", g_width=8, d_width=8, max_steps=4)), data_hash=DATA_HASH)
    weight = "main.0.weight"  # autocast did change the arithmetic
    assert not torch.equal(bf16[0].generator.state_dict()[weight], fp32.generator.state_dict()[weight])


# ------------------------------------------------------------------------- reporting

def test_report_gets_losses_throughput_and_ema_samples(tmp_path):
    calls = []
    result = train_gan(
        synthetic_images(),
        TrainingConfig.from_params(tiny_params(tmp_path, max_steps=8, sample_every=4), grid_size=4),
        data_hash=DATA_HASH,
        report=lambda step, metrics, samples=None: calls.append((step, metrics, samples)),
    )
    assert [step for step, _, _ in calls] == [2, 4, 6, 8]
    assert [row["step"] for row in result.history] == [2, 4, 6, 8]
    for step, metrics, samples in calls:
        assert set(metrics) == {"loss_d", "loss_g", "images_per_sec"}
        assert metrics["images_per_sec"] > 0
        assert metrics == {key: result.history[step // 2 - 1][key] for key in metrics}
        if step % 4:
            assert samples is None
        else:
            assert samples.dtype == torch.uint8 and samples.shape == (4, 1, 32, 32)
    # Samples come from the EMA generator, seeds 0..grid_size-1.
    assert torch.equal(calls[-1][2], generate_images(result.generator, range(4)))


class Terminal(io.StringIO):
    """What tqdm writes to when stderr is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_training_bar_shows_each_intervals_step_losses_and_images_per_second(tmp_path,
                                                                                monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    result = train_gan(synthetic_images(),
                       TrainingConfig.from_params(tiny_params(tmp_path, max_steps=8)),
                       data_hash=DATA_HASH)
    frames = [frame.strip() for frame in re.split(r"[\r\n]", terminal.getvalue()) if frame.strip()]
    assert frames[0] == "training:   0%|          | 0/8 [00:00<?, ?step/s]"
    rate = r"\d\d:\d\d<\d\d:\d\d, [\d.]+(?:step/s|s/step)"
    for row in result.history:  # steps 2, 4, 6, 8: each interval as progress.end_interval shows it
        shown = (rf"training: +\d+%\|[#\d ]+\| {row['step']}/8 \[{rate}, "
                 rf"img_s={row['images_per_sec']:.0f}, loss_d={row['loss_d']:.3f}, "
                 rf"loss_g={row['loss_g']:.3f}\]")
        assert any(re.fullmatch(shown, frame) for frame in frames), (shown, frames)
    last = result.history[-1]
    assert re.fullmatch(rf"training: 100%\|#+\| 8/8 \[{rate}, img_s={last['images_per_sec']:.0f}, "
                        rf"loss_d={last['loss_d']:.3f}, loss_g={last['loss_g']:.3f}\]", frames[-1])
    assert re.search(r"\] *\n$", terminal.getvalue())  # the bar stays; what follows starts below


# ------------------------------------------------------------------------- NaN guard

def test_nonfinite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    images = synthetic_images()
    clean = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "clean", max_steps=4)),
                      data_hash=DATA_HASH)
    assert clean.step == 4
    calls = []

    def generator_loss_turning_nan(kind, fake_logits):
        calls.append(1)
        loss = F.softplus(-fake_logits.float()).mean()
        return loss * float("nan") if len(calls) >= 6 else loss

    monkeypatch.setattr(loop, "generator_loss", generator_loss_turning_nan)
    # Log only at the end: the guard must also hold at a checkpoint step (8) without a log.
    config = TrainingConfig.from_params(tiny_params(tmp_path, log_every=10))
    with pytest.raises(TrainingDivergedError, match=r"at step 6\. The last good checkpoint, .*step_00000004\.pt"):
        train_gan(images, config, data_hash=DATA_HASH)
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt"]
    kept = torch.load(checkpoints(tmp_path)[0], weights_only=True)
    reference = torch.load(checkpoints(tmp_path / "clean")[0], weights_only=True)
    for key in ("generator", "discriminator", "generator_ema"):
        assert_identical(kept[key], reference[key])


# ------------------------------------------------------------------------- result

def test_result_checkpoint_is_the_ema_generator_with_its_provenance(tmp_path):
    result = train_gan(synthetic_images(), TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                       data_hash=DATA_HASH)
    checkpoint = result.checkpoint
    assert isinstance(checkpoint, GeneratorCheckpoint)
    assert (checkpoint.training_device, checkpoint.step, checkpoint.variant) == ("cpu", 4, "ema")
    assert checkpoint.config == {"resolution": 32, "channels": 1, "latent_dim": 8, "g_width": 4}
    assert_identical(checkpoint.state_dict, result.generator.state_dict())
    checkpoint.save(tmp_path / "generator.pt")
    reloaded = load_generator(tmp_path / "generator.pt")
    assert torch.equal(generate_images(reloaded, range(3)), generate_images(result.generator, range(3)))
