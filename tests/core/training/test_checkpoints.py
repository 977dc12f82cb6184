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


def _folders(tmp_path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "checkpoints").iterdir())


def test_a_changed_setting_starts_fresh_and_the_same_setting_resumes(tmp_path):
    images = synthetic_images()
    config = TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2))
    assert train_gan(images, config, data_hash=DATA_HASH).resumed_from is None
    first = _folders(tmp_path)
    assert first == [config.checkpoint_key(DATA_HASH, 32, 1, 0)]
    # Another width: a new folder, trained from scratch, no error.
    wider = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, g_width=8, max_steps=2)),
                      data_hash=DATA_HASH)
    assert wider.resumed_from is None and len(_folders(tmp_path)) == 2
    # The first setting again (more steps): it finds its own checkpoints.
    resumed = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                        data_hash=DATA_HASH)
    assert resumed.resumed_from.parent.name == first[0]
    assert resumed.resumed_from.name == "step_00000002.pt"
    # Other data: another folder, so training starts afresh instead of resuming.
    assert train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
                     data_hash="fedcba9876543210").resumed_from is None
    assert len(_folders(tmp_path)) == 3
    # Settings that do not shape the weights (cadence, device...) keep the same folder.
    assert config.checkpoint_key(DATA_HASH, 32, 1, 0) == TrainingConfig.from_params(
        tiny_params(tmp_path, max_steps=99, log_every=5, checkpoint_every=0)).checkpoint_key(
        DATA_HASH, 32, 1, 0)


def test_a_checkpoint_with_other_parameters_in_the_folder_is_refused(tmp_path):
    images = synthetic_images()
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
              data_hash=DATA_HASH)
    # A checkpoint written with other parameters, copied into this setting's folder.
    path = checkpoints(tmp_path)[-1]
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["params"]["lr_d"] = 0.001
    torch.save(checkpoint, path.with_name("step_00000003.pt"))
    with pytest.raises(CheckpointMismatchError,
                       match=r"step_00000003\.pt.*lr_d=0.001 there, 0.0002 now.*resume=never"):
        train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                  data_hash=DATA_HASH)
    # One written by a newer Atelier (a later checkpoint format) is refused, not misread.
    checkpoint["params"]["lr_d"] = 0.0002
    checkpoint["format"] = 99
    torch.save(checkpoint, path.with_name("step_00000003.pt"))
    with pytest.raises(CheckpointMismatchError, match=r"newer Atelier \(checkpoint format 99"):
        train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                  data_hash=DATA_HASH)
    # resume=never starts over, replacing the folder's checkpoints.
    result = train_gan(images, TrainingConfig.from_params(
        tiny_params(tmp_path, max_steps=2, resume="never")), data_hash=DATA_HASH)
    assert result.resumed_from is None
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000002.pt"]


@pytest.mark.parametrize("content", [
    b"not a checkpoint",  # foreign bytes
    b"PK\x03\x04truncated zip",  # a cut-off torch.save file
    "pickle",  # an old-style pickle: never unpickled (weights_only), reported instead
])
def test_unreadable_newest_checkpoint_is_named_and_the_one_before_resumed(tmp_path, caplog,
                                                                           content):
    images = synthetic_images()
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
              data_hash=DATA_HASH)
    foreign = checkpoints(tmp_path)[-1].with_name("step_00000003.pt")
    if content == "pickle":
        import pickle

        foreign.write_bytes(pickle.dumps({"step": 3, "params": {}, "generator_config": {}}))
    else:
        foreign.write_bytes(content)
    with caplog.at_level("WARNING", logger="atelier.core.training"):
        resumed = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=4)),
                            data_hash=DATA_HASH)
    assert resumed.resumed_from.name == "step_00000002.pt"
    assert "step_00000003.pt: it is not a readable Atelier training checkpoint" in caplog.text
    assert "Falling back to the checkpoint before it" in caplog.text


def test_only_unreadable_checkpoints_start_over(tmp_path):
    images = synthetic_images()
    train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
              data_hash=DATA_HASH)
    checkpoints(tmp_path)[-1].write_bytes(b"garbage")
    with pytest.raises(CheckpointUnreadableError):
        from atelier.core.training.checkpoints import _read_checkpoint_header

        _read_checkpoint_header(checkpoints(tmp_path)[-1])
    result = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path, max_steps=2)),
                       data_hash=DATA_HASH)
    assert result.resumed_from is None and result.step == 2


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
