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
from atelier.core.shards import (
    ShardedImages,
    read_index,
    split_slices,
    write_index,
    write_shard,
)
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


def test_a_primary_record_of_shards_trains_from_the_shards(tmp_path):
    """images.pt written with preprocessing.storage: shards names the shards; the command
    line streams its training split (the same weights as train_gan on those shards)."""
    images = synthetic_images()
    location = str(tmp_path / "shards" / "key")
    entries = [write_shard(location, "train", number, images[part].numpy())
               for number, part in enumerate(split_slices(40, 10))]
    val = [write_shard(location, "val", 0, images[40:].numpy())]
    write_index(location, {"channels": 1, "resolution": 32, "splits": {
        "train": {"count": 40, "shards": entries}, "val": {"count": 8, "shards": val}}})
    is_val = torch.zeros(len(images), dtype=torch.bool)
    is_val[40:] = True
    torch.save({"shards": {"location": location, "key": "key", "index": read_index(location)},
                "is_val": is_val, "data_hash": DATA_HASH}, tmp_path / "images.pt")
    params = tiny_params(tmp_path / "cli", max_steps=6)
    (tmp_path / "params.yml").write_text(yaml.safe_dump({"training": params}))

    main(["--data", str(tmp_path / "images.pt"), "--params", str(tmp_path / "params.yml"),
          "--output", str(tmp_path / "generator.pt")])

    written = load_generator(GeneratorCheckpoint.load(tmp_path / "generator.pt"))
    streamed = train_gan(ShardedImages.open(location, "train"), TrainingConfig.from_params(
        {**params, "checkpoint_dir": str(tmp_path / "in_process")}), data_hash=DATA_HASH)
    assert_identical(written.state_dict(), streamed.generator.state_dict())
    from_tensor = train_gan(images[:40], TrainingConfig.from_params(
        {**params, "checkpoint_dir": str(tmp_path / "tensor")}), data_hash=DATA_HASH)
    assert not torch.equal(written.state_dict()["main.0.weight"],
                           from_tensor.generator.state_dict()["main.0.weight"])
