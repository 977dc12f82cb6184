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
