"""Fine-tuning in the torch library (src/atelier/core/training/parent.py and the loop):
what a run keeps (``TrainingState``), what a fine-tune starts from, FreezeD, class rows,
and the refusals that name the key. Tiny networks, a few steps; against the registry in
tests/tracking/test_finetune.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from training_cases import one_thread, synthetic_images, tiny_params  # noqa: F401

from atelier.core.errors import ParentModelError
from atelier.core.generate import generate_images
from atelier.core.models import GeneratorCheckpoint
from atelier.core.training import TrainingConfig, train_gan
from atelier.core.training.parent import (
    TrainingState,
    check_parent,
    discriminator_blocks,
    merged_class_names,
)

SEEDS = list(range(6))


def _train(tmp_path, images, parent=None, labels=None, report=None, **overrides):
    config = TrainingConfig.from_params(tiny_params(tmp_path, **overrides), grid_size=len(SEEDS))
    return train_gan(images, config, data_hash="abc", parent=parent, labels=labels, report=report)


def _check(state: TrainingState, **overrides) -> None:
    ours = {"architecture": "dcgan", "resolution": 32, "channels": 1, "latent_dim": 8,
            "g_width": 4, "d_width": 4, "spectral_norm": False, "conditional": False}
    check_parent(state, **{**ours, **overrides})


@pytest.fixture(scope="module")
def parent_state(tmp_path_factory) -> TrainingState:
    torch.set_num_threads(1)
    result = _train(tmp_path_factory.mktemp("parent"), synthetic_images(), max_steps=6)
    return result.training_state()


def test_a_run_keeps_its_discriminator_and_the_state_round_trips(parent_state, tmp_path):
    assert parent_state.discriminator == {"architecture": "dcgan", "d_width": 4,
                                          "spectral_norm": False, "num_classes": 0}
    assert parent_state.discriminator_state
    path = tmp_path / "training_state.pt"
    parent_state.save(path)
    loaded = TrainingState.load(path)
    assert loaded.sha256() == parent_state.sha256()
    for key, value in parent_state.discriminator_state.items():
        assert torch.equal(loaded.discriminator_state[key], value)


def test_the_fine_tune_starts_from_the_parents_generator(parent_state, tmp_path):
    reported = {}

    def report(step, metrics, samples=None):
        if samples is not None:
            reported.setdefault(step, samples)

    parent = GeneratorCheckpoint.from_dict(parent_state.generator.to_dict())
    from atelier.core.models import load_generator
    expected = generate_images(load_generator(parent), SEEDS)
    other = synthetic_images(count=24, resolution=32) // 2  # different data
    result = _train(tmp_path, other, parent=parent_state, report=report, sample_every=2,
                    max_steps=4)
    assert torch.equal(reported[0], expected), "step 0's images are not the parent's"
    assert not torch.equal(reported[2], expected), "training did not move the generator"
    assert result.step == 4


def test_fine_tunes_and_runs_from_scratch_never_share_checkpoints(parent_state, tmp_path):
    _train(tmp_path, synthetic_images(), max_steps=2)
    _train(tmp_path, synthetic_images(), parent=parent_state, max_steps=2)
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2


def test_freeze_d_keeps_the_first_blocks_at_the_parents_weights(parent_state, tmp_path):
    result = _train(tmp_path, synthetic_images(), parent=parent_state, max_steps=3,
                    freeze_d_layers=2, init_from="parent.pt")
    after, before = result.discriminator_state, parent_state.discriminator_state
    # DCGAN at 32 px: blocks are main.0 (conv), main.2 (conv) + main.3 (BN), main.5 + main.6
    frozen = ("main.0.weight", "main.2.weight", "main.3.weight", "main.3.bias",
              "main.3.running_mean", "main.3.running_var")
    for key in frozen:
        assert torch.equal(after[key], before[key]), f"{key} moved"
    assert not torch.equal(after["main.5.weight"], before["main.5.weight"])


def test_freeze_d_layers_beyond_the_discriminator_is_refused(parent_state, tmp_path):
    with pytest.raises(ParentModelError, match=r"freeze_d_layers is 9 .* 3 blocks"):
        _train(tmp_path, synthetic_images(), parent=parent_state, freeze_d_layers=9,
               init_from="parent.pt")


def test_freeze_d_layers_without_a_parent_is_refused(tmp_path):
    with pytest.raises(ValueError, match="freeze_d_layers is 1 but init_from is null"):
        TrainingConfig.from_params(tiny_params(tmp_path, freeze_d_layers=1))


def test_fastgan_discriminator_blocks_are_its_down_blocks():
    from atelier.core.models import build_discriminator
    discriminator = build_discriminator("fastgan", 32, 3, 8, True, 0)
    assert len(discriminator_blocks(discriminator)) == len(discriminator.blocks) == 2


@pytest.mark.parametrize(("overrides", "message"), [
    ({"g_width": 8}, r"training.g_width is 8 here but 4 in the parent.*training.g_width=4"),
    ({"resolution": 64}, r"preprocessing.resolution is 64 here but 32 in the parent"),
    ({"channels": 3}, r"preprocessing.channels is 3 here but 1 in the parent"),
    ({"latent_dim": 16}, r"training.latent_dim is 16 here but 8 in the parent"),
    ({"architecture": "fastgan"}, r"training.architecture is 'fastgan' here but 'dcgan'"),
    ({"d_width": 8}, r"training.d_width is 8 here but 4"),
    ({"conditional": True}, r"training.conditional is true but .* an unconditional model"),
])
def test_an_incompatible_run_is_refused_naming_the_key(parent_state, overrides, message):
    with pytest.raises(ParentModelError, match=message):
        _check(parent_state, **overrides)


def test_a_conditional_parent_into_an_unconditional_run_is_refused(tmp_path):
    labels = torch.arange(48) % 2
    state = _train(tmp_path, synthetic_images(), labels=labels, conditional=True,
                   max_steps=2).training_state()
    state = dataclasses.replace(state, generator=dataclasses.replace(
        state.generator, class_names=("cat", "dog")))
    with pytest.raises(ParentModelError, match="class-conditional model but "
                                               "training.conditional is false"):
        _check(state)
    unnamed = dataclasses.replace(state, generator=dataclasses.replace(state.generator,
                                                                       class_names=()))
    with pytest.raises(ParentModelError, match="classes are unnamed"):
        _check(unnamed, conditional=True)


def test_classes_match_by_name_new_ones_get_new_rows(tmp_path):
    labels = torch.arange(48) % 2
    trained = _train(tmp_path / "a", synthetic_images(), labels=labels, conditional=True,
                     max_steps=2)
    state = trained.training_state(dataclasses.replace(trained.checkpoint,
                                                       class_names=("cat", "dog")))
    names = merged_class_names(state.generator, ["dog", "fox"])
    assert names == ("cat", "dog", "fox")
    # The run's images are dogs and foxes: labels in the merged numbering (1 and 2).
    run_labels = torch.tensor([1, 2] * 12)
    reported = {}
    result = _train(tmp_path / "b", synthetic_images(count=24), parent=state, labels=run_labels,
                    conditional=True, max_steps=1, sample_every=1, log_every=1,
                    report=lambda step, metrics, samples=None: reported.setdefault(step, samples))
    parent_rows = state.generator.state_dict["class_embedding.weight"]
    start = result.generator.class_embedding.weight.detach()
    assert start.shape[0] == 3
    assert reported[0] is not None and reported[0].shape[0] == len(SEEDS)
    # step 0 draws classes in turn: seeds 0 and 1 are cat and dog, the parent's rows
    from atelier.core.models import load_generator
    parent_images = generate_images(load_generator(state.generator), [0, 1], labels=[0, 1])
    assert torch.equal(reported[0][:2], parent_images)
    assert parent_rows.shape[0] == 2


def test_files_that_are_not_training_states_are_refused(parent_state, tmp_path):
    with pytest.raises(ParentModelError, match="not a file"):
        TrainingState.load(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ParentModelError, match="not a readable Atelier training state"):
        TrainingState.load(garbage)
    generator_only = tmp_path / "generator.pt"
    parent_state.generator.save(generator_only)
    with pytest.raises(ParentModelError, match="holds a generator only"):
        TrainingState.load(generator_only)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ParentModelError, match="not an Atelier training state"):
        TrainingState.load(other)


def test_a_training_checkpoint_is_a_parent_too(tmp_path):
    _train(tmp_path, synthetic_images(), max_steps=4)
    step_file = sorted((tmp_path / "checkpoints").glob("*/step_*.pt"))[-1]
    state = TrainingState.load(step_file)
    assert state.generator.step == 4 and state.discriminator["d_width"] == 4
    _check(state)


@pytest.mark.slow  # two FastGAN trainings with spectral norm and ADA (~20 s)
def test_a_fastgan_parent_fine_tunes_and_freezes_its_down_blocks(tmp_path):
    """Both network families: a FastGAN run (spectral norm, ADA) is a parent too; its
    fine-tune starts from its generator and its ADA strength, and FreezeD keeps its first
    down-sampling block."""
    fastgan = {"architecture": "fastgan", "spectral_norm": True, "loss": "hinge", "g_width": 8,
               "d_width": 8, "augment": "color,translation", "augment_p": 0.3, "ada": True,
               "ada_kimg": 1}
    images = synthetic_images(count=24, channels=3)
    state = _train(tmp_path / "parent", images, max_steps=4, **fastgan).training_state()
    assert state.discriminator["architecture"] == "fastgan" and state.augment_p is not None
    assert state.augment_p != 0.3  # ADA moved it; the fine-tune starts there
    check_parent(state, architecture="fastgan", resolution=32, channels=3, latent_dim=8,
                 g_width=8, d_width=8, spectral_norm=True, conditional=False)
    reported = {}
    from atelier.core.models import load_generator
    expected = generate_images(load_generator(state.generator), SEEDS)
    result = _train(tmp_path / "child", images.flip(0), parent=state, max_steps=2,
                    sample_every=2, freeze_d_layers=1, init_from="parent.pt",
                    report=lambda step, metrics, samples=None: reported.setdefault(step, samples),
                    **fastgan)
    assert torch.equal(reported[0], expected)
    frozen = [key for key in state.discriminator_state
              if key.startswith("blocks.0.") and "weight" in key and "_u" not in key
              and "_v" not in key and "running" not in key]
    assert frozen
    for key in frozen:
        assert torch.equal(result.discriminator_state[key], state.discriminator_state[key]), key
    moved = [key for key in state.discriminator_state if key.startswith("blocks.1.")
             and "weight" in key and not torch.equal(result.discriminator_state[key],
                                                     state.discriminator_state[key])]
    assert moved
