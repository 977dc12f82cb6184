"""Shared helpers for the ``atelier.core.training`` tests: tiny settings, images, jobs.

Tiny models (widths 4, 32 x 32, batch 8, a dozen steps) so each test runs in seconds;
what the tests check is exact: bit-identical weights, checkpoint contents, the step in
messages. ``training_job.py`` runs a training in its own process for the tests that kill,
signal or distribute it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[3]
JOB = Path(__file__).with_name("training_job.py")
DATA_HASH = "0123456789abcdef"  # what training_job.py passes


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the subprocess jobs use one too.

    Autouse in the test modules that import it.
    """
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
        checkpoint_dir=str(tmp_path / "checkpoints"), deterministic=True,
        precision="fp32",  # CPU bf16 kernels are slow for 4-channel layers; tested separately
        eval_every=0,  # model selection needs a scorer (Inception): tested on its own
    )
    params.update(overrides)
    return params


def synthetic_images(count: int = 48, channels: int = 1, resolution: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    return torch.randint(0, 256, (count, channels, resolution, resolution), dtype=torch.uint8,
                         generator=generator)


def checkpoints(tmp_path: Path) -> list[Path]:
    """Every checkpoint under the run's keyed folder (<checkpoint_dir>/<key>/step_*.pt)."""
    folders = list((tmp_path / "checkpoints").glob("*/"))
    assert len(folders) <= 1, f"several checkpoint folders: {folders}"
    return sorted(folders[0].glob("step_*.pt")) if folders else []


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


def record_training_passes(monkeypatch: pytest.MonkeyPatch, discriminator_inputs: list,
                           generator_outputs: list) -> None:
    """Append what every training pass of D receives, and what every training forward of G
    returns, to the two lists (passes under ``no_grad``, sampling and batch-norm
    recalibration, are left out)."""
    from atelier.core.models import Discriminator, Generator

    for module, calls, output in ((Discriminator, discriminator_inputs, False),
                                  (Generator, generator_outputs, True)):
        forward = module.forward

        def recording_forward(self, inputs, labels=None, _forward=forward, _calls=calls,
                              _output=output):
            result = _forward(self, inputs, labels)
            if torch.is_grad_enabled():
                _calls.append((result if _output else inputs).detach().clone())
            return result

        monkeypatch.setattr(module, "forward", recording_forward)


def cut_out(augmented: torch.Tensor, before: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: did DiffAugment's cutout zero part of it? Cutout leaves at least an 8 x 8
    zero block at 32 px (a corner-clipped square); translation's zero fill is a strip at most
    4 px wide, so a 5 x 5 block of pixels that were not 0 ``before`` (real pixels never are:
    ``before`` None) and are 0 in every channel now is cutout's."""
    before = torch.ones_like(augmented) if before is None else before
    zeroed = ((augmented == 0) & (before != 0)).all(dim=1, keepdim=True).float()
    return torch.nn.functional.avg_pool2d(zeroed, 5, stride=1).flatten(1).amax(dim=1) == 1
