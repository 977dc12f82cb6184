"""atelier.core.training: config, determinism, checkpoints and resume, signals, NaN guard, DDP.

Tiny models (widths 4, 32 x 32, batch 8, a dozen steps) so the whole file runs in seconds;
what is checked is exact: bit-identical weights, checkpoint bytes, the step in messages.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from atelier.core import training
from atelier.core.generate import generate_images
from atelier.core.training import TrainingConfig, launch_training, train_gan
from atelier.errors import CheckpointMismatchError, TrainingDivergedError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("training_job.py")
DATA_HASH = "0123456789abcdef"  # what training_job.py passes


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the subprocess jobs use one too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_params(tmp_path: Path, **overrides) -> dict:
    """conf/base's training parameters, shrunk for tests."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    params = params["training"]
    params.update(
        device="cpu", max_steps=10, batch_size=8, latent_dim=8, g_width=4, d_width=4,
        log_every=2, sample_every=0, checkpoint_every=4, keep_checkpoints=10,
        checkpoint_dir=str(tmp_path / "checkpoints"), deterministic=True, num_sample_images=4,
        precision="fp32",  # CPU bf16 kernels are slow for 4-channel layers; tested separately
    )
    params.update(overrides)
    return params


def synthetic_images(count: int = 48, channels: int = 1, resolution: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    return torch.randint(0, 256, (count, channels, resolution, resolution), dtype=torch.uint8,
                         generator=generator)


def checkpoints(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "checkpoints" / DATA_HASH[:12]).glob("step_*.pt"))


def run_job(tmp_path: Path, name: str, params: dict, *extra: str) -> subprocess.CompletedProcess:
    params_file = tmp_path / f"{name}.json"
    params_file.write_text(json.dumps(params))
    data = tmp_path / "images.pt"
    if not data.exists():
        torch.save(synthetic_images(), data)
    return subprocess.run(
        [sys.executable, str(JOB), str(params_file), str(data), str(tmp_path / f"{name}.out.pt"),
         *extra], capture_output=True, text=True, timeout=300,
    )


def job_weights(tmp_path: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(tmp_path / f"{name}.out.pt", weights_only=True)["generator_ema"]


def assert_identical(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), f"{key} differs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------- config

def test_config_rejects_unknown_and_missing_keys(tmp_path):
    params = tiny_params(tmp_path)
    with pytest.raises(ValueError, match=r"Unknown training parameter\(s\) \['g_widht'\]"):
        TrainingConfig.from_params({**params, "g_widht": 8})
    del params["ema_decay"]
    with pytest.raises(ValueError, match=r"Missing training parameter\(s\) \['ema_decay'\]"):
        TrainingConfig.from_params(params)


def test_config_validates_values(tmp_path):
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainingConfig.from_params(tiny_params(tmp_path, loss="wasserstein"))
    with pytest.raises(ValueError, match="sample_every .* multiple of log_every"):
        TrainingConfig.from_params(tiny_params(tmp_path, log_every=3, sample_every=10))
    config = TrainingConfig.from_params(tiny_params(tmp_path, lr_g="1e-4", compile="false"))
    assert config.lr_g == 1e-4 and config.compile is False


def test_conf_base_parameters_are_valid():
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    TrainingConfig.from_params(params["training"])


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


def test_report_gets_losses_throughput_and_ema_samples(tmp_path):
    calls = []
    result = train_gan(
        synthetic_images(),
        TrainingConfig.from_params(tiny_params(tmp_path, max_steps=8, sample_every=4)),
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
    # Samples come from the EMA generator, seeds 0..num_sample_images-1.
    assert torch.equal(calls[-1][2], generate_images(result.generator, range(4)))


# ------------------------------------------------------------------------- checkpoints

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
    assert set(checkpoint["rng"]) == {"torch", "cuda", "numpy", "python"}
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


def test_nonfinite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    images = synthetic_images()
    clean = train_gan(images, TrainingConfig.from_params(tiny_params(tmp_path / "clean", max_steps=4)),
                      data_hash=DATA_HASH)
    assert clean.step == 4
    calls = []

    def generator_loss_turning_nan(kind, fake_logits):
        calls.append(1)
        loss = training.F.softplus(-fake_logits.float()).mean()
        return loss * float("nan") if len(calls) >= 6 else loss

    monkeypatch.setattr(training, "_generator_loss", generator_loss_turning_nan)
    # Log only at the end: the guard must also hold at a checkpoint step (8) without a log.
    config = TrainingConfig.from_params(tiny_params(tmp_path, log_every=10))
    with pytest.raises(TrainingDivergedError, match=r"at step 6\. The last good checkpoint, .*step_00000004\.pt"):
        train_gan(images, config, data_hash=DATA_HASH)
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt"]
    kept = torch.load(checkpoints(tmp_path)[0], weights_only=True)
    reference = torch.load(checkpoints(tmp_path / "clean")[0], weights_only=True)
    for key in ("generator", "discriminator", "generator_ema"):
        assert_identical(kept[key], reference[key])


# ------------------------------------------------------------------- signals and kills

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


def test_sigterm_writes_a_checkpoint_then_exits(tmp_path):
    terminated = run_job(tmp_path, "terminated", tiny_params(tmp_path), "--signal-at", "6",
                         "--signal", "TERM")
    assert terminated.returncode == -signal.SIGTERM
    assert "Received SIGTERM" in terminated.stderr
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000006.pt"]
    checkpoint = torch.load(checkpoints(tmp_path)[-1], weights_only=True)
    assert checkpoint["step"] == 6 and checkpoint["history"][-1]["step"] == 6


# ------------------------------------------------------------------------------- DDP

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
