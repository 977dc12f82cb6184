"""atelier.core.training.distributed: DDP ranks (gloo on CPU) keep replicas identical."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    JOB,
    free_port,
    job_weights,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core.training import TrainingConfig, launch_training, train_gan


@pytest.mark.slow
def test_two_gloo_processes_keep_replicas_identical(tmp_path):
    params = tiny_params(tmp_path, max_steps=6, checkpoint_every=0)
    port = str(free_port())
    params_file = tmp_path / "ddp.json"
    params_file.write_text(json.dumps(params))
    torch.save(synthetic_images(), tmp_path / "images.pt")
    ranks = [
        subprocess.Popen(
            [sys.executable, str(JOB), str(params_file), str(tmp_path / "images.pt"),
             str(tmp_path / f"rank{rank}.out.pt"), "--rank", str(rank), "--world-size", "2",
             "--port", port], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert "24 of 48 training images on this rank" in outputs[0]
    rank0, rank1 = job_weights(tmp_path, "rank0"), job_weights(tmp_path, "rank1")
    single = train_gan(synthetic_images(), TrainingConfig.from_params(
        tiny_params(tmp_path / "single", max_steps=6)), data_hash=DATA_HASH)
    for name, _ in single.generator.named_parameters():  # buffers: rank 0's are broadcast
        assert torch.equal(rank0[name], rank1[name]), name
    assert not torch.equal(rank0["main.0.weight"], single.generator.state_dict()["main.0.weight"])

    # The node's launcher (this process as rank 0, one spawned rank) trains the same way.
    launched = launch_training(synthetic_images(), TrainingConfig.from_params(
        {**params, "devices": 2, "checkpoint_dir": str(tmp_path / "launched")}), data_hash=DATA_HASH)
    for name, value in launched.generator.named_parameters():
        assert torch.equal(value, rank0[name]), name


STABILISED = {"augment": "color,translation,cutout", "spectral_norm": True, "loss": "hinge",
              "r1_gamma": 1.0, "r1_every": 2}


@pytest.mark.slow
def test_ddp_trains_with_augmentation_spectral_norm_and_r1(tmp_path):
    """The small-data stabilisers under DDP (two gloo ranks): R1's double backward runs on
    the plain discriminator, which DDP's reducer would refuse."""
    params = tiny_params(tmp_path, max_steps=4, checkpoint_every=0, devices=2, **STABILISED)
    result = launch_training(synthetic_images(), TrainingConfig.from_params(params),
                             data_hash=DATA_HASH)
    assert result.step == 4
    assert all(torch.isfinite(value).all() for value in result.generator.state_dict().values())
    checkpoint = torch.load(next((tmp_path / "checkpoints").glob("*/step_*.pt")), weights_only=True)
    assert any("parametrizations" in key for key in checkpoint["discriminator"])  # SN is on


def test_bf16_autocast_trains_with_the_stabilisers_and_classes(tmp_path):
    labels = torch.arange(48) % 3
    params = tiny_params(tmp_path, max_steps=4, precision="bf16", conditional=True, **STABILISED)
    result = train_gan(synthetic_images(), TrainingConfig.from_params(params), data_hash=DATA_HASH,
                       labels=labels)
    assert result.generator.num_classes == 3
    assert all(torch.isfinite(value).all() for value in result.generator.state_dict().values())
    assert [row["step"] for row in result.history] == [2, 4]
    assert all(torch.isfinite(torch.tensor([row["loss_d"], row["loss_g"]])).all()
               for row in result.history)
