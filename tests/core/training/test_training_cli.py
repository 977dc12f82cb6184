"""atelier.core.training.cli: ``python -m atelier.core.training`` writes a GeneratorCheckpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    assert_identical,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core.models import GeneratorCheckpoint, load_generator
from atelier.core.training import TrainingConfig, main, train_gan


def test_command_line_trains_and_writes_the_ema_generator_checkpoint(tmp_path):
    images = synthetic_images()
    is_val = torch.zeros(len(images), dtype=torch.bool)
    is_val[-8:] = True  # validation rows are left out of training
    torch.save({"images": images, "is_val": is_val, "data_hash": DATA_HASH}, tmp_path / "images.pt")
    params = tiny_params(tmp_path / "cli", max_steps=10)
    (tmp_path / "params.yml").write_text(yaml.safe_dump({"training": params}))

    main(["--data", str(tmp_path / "images.pt"), "--params", str(tmp_path / "params.yml"),
          "--output", str(tmp_path / "generator.pt"), "--set", "training.max_steps=6"])

    written = GeneratorCheckpoint.load(tmp_path / "generator.pt")
    assert (written.training_device, written.step, written.variant) == ("cpu", 6, "ema")
    in_process = train_gan(images[:-8], TrainingConfig.from_params(
        {**params, "max_steps": 6, "checkpoint_dir": str(tmp_path / "in_process")}), data_hash=DATA_HASH)
    assert_identical(load_generator(written).state_dict(), in_process.generator.state_dict())


@pytest.mark.slow  # a training in a subprocess
def test_module_runs_as_a_program():
    result = subprocess.run([sys.executable, "-m", "atelier.core.training", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m atelier.core.training" in result.stdout and "--output" in result.stdout
