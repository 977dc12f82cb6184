"""atelier.core.training.checkpoints: contents, pruning, resume, refusals, kills and signals."""

from __future__ import annotations

import signal

import pytest
import torch
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    assert_identical,
    checkpoints,
    job_weights,
    one_thread,
    run_job,
    synthetic_images,
    tiny_params,
)

from atelier.core.errors import CheckpointMismatchError, CheckpointUnreadableError
from atelier.core.training import TrainingConfig, train_gan


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    train_gan(synthetic_images(), TrainingConfig.from_params(tiny_params(tmp_path, keep_checkpoints=2)),
              data_hash=DATA_HASH)
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000008.pt", "step_00000010.pt"]
    checkpoint = torch.load(checkpoints(tmp_path)[-1], weights_only=True)
    assert checkpoint["step"] == 10
    assert checkpoint["params"]["g_width"] == 4 and checkpoint["data_hash"] == DATA_HASH
    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d",
                "scaler_g", "scaler_d"):
        assert checkpoint[key] is not None, key
    # No RNG state: every draw comes from a stream reseeded from (seed, rank, step).
    assert "rng" not in checkpoint
    assert [row["step"] for row in checkpoint["history"]] == [2, 4, 6, 8, 10]


def test_resume_continues_from_newest_checkpoint_and_matches_uninterrupted_run(tmp_path, caplog):
    images = synthetic_images()
    uninterrupted = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "u")),
                              data_hash=DATA_HASH)
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "r", max_steps=4)),
              data_hash=DATA_HASH)
    with caplog.at_level("INFO", logger="atelier.core.training"):
        resumed = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "r")),
                            data_hash=DATA_HASH)
    assert resumed.resumed_from.name == "step_00000004.pt"
    assert "Resuming training from" in caplog.text and "step 4 of 10" in caplog.text
    assert_identical(uninterrupted.generator.state_dict(), resumed.generator.state_dict())
    assert [row["step"] for row in resumed.history] == [2, 4, 6, 8, 10]


def test_checkpoint_with_other_model_parameters_is_refused(tmp_path):
    images = synthetic_images()
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
              data_hash=DATA_HASH)
    with pytest.raises(CheckpointMismatchError,
                       match=r"step_00000002\.pt.*g_width=4 there, 8 now.*resume=never"):
        train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, g_width=8)),
                  data_hash=DATA_HASH)
    # resume=never starts over, replacing the old run's checkpoints.
    result = train_gan(images, TrainingConfig.from_params(
        tiny_params(tmp_path, g_width=8, max_steps=2, resume="never")), data_hash=DATA_HASH)
    assert result.resumed_from is None
    assert torch.load(checkpoints(tmp_path)[-1], weights_only=True)["params"]["g_width"] == 8
    # Other data: another folder, so training starts afresh instead of resuming.
    assert train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
                     data_hash="fedcba9876543210").resumed_from is None


def test_unreadable_newest_checkpoint_is_refused_saying_what_to_do(tmp_path):
    images = synthetic_images()
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
              data_hash=DATA_HASH)
    foreign = checkpoints(tmp_path)[-1].with_name("step_00000003.pt")
    foreign.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointUnreadableError,
                       match=r"step_00000003\.pt: it is not a readable .*Delete it.*resume=never"):
        train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                  data_hash=DATA_HASH)
    foreign.unlink()  # as the message says: the run resumes from the one before
    resumed = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                        data_hash=DATA_HASH)
    assert resumed.resumed_from.name == "step_00000002.pt"


# ------------------------------------------------------------------- signals and kills

@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted_run(tmp_path):
    params = tiny_params(tmp_path)
    uninterrupted = run_job(tmp_path, "uninterrupted",
                            {**params, "checkpoint_dir": str(tmp_path / "other")})
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    killed = run_job(tmp_path, "killed", params, "--signal-at", "6", "--signal", "KILL")
    assert killed.returncode == -signal.SIGKILL
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt"]
    resumed = run_job(tmp_path, "resumed", params)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming training from" in resumed.stderr
    assert_identical(job_weights(tmp_path, "uninterrupted"), job_weights(tmp_path, "resumed"))


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_then_exits(tmp_path):
    terminated = run_job(tmp_path, "terminated", tiny_params(tmp_path), "--signal-at", "6",
                         "--signal", "TERM")
    assert terminated.returncode == -signal.SIGTERM
    assert "Received SIGTERM" in terminated.stderr
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000006.pt"]
    checkpoint = torch.load(checkpoints(tmp_path)[-1], weights_only=True)
    assert checkpoint["step"] == 6 and checkpoint["history"][-1]["step"] == 6
