"""The command line (``python -m atelier.core.metrics``) against ``python -m pytorch_fid``.

Inception runs with the stand-in weights (the ``standin_torch_home`` fixture), which
pytorch-fid loads from the same place; see test_inception.py.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from digit_cases import digits, write_pngs


def _cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def two_image_folders(tmp_path_factory):
    """200 clean digits and 200 other digits with added noise, as 32 x 32 grayscale PNGs."""
    root = tmp_path_factory.mktemp("folders")
    clean = write_pngs(root / "a", digits(range(200)))
    grain = torch.randn(200, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 30
    noisy_digits = digits(range(200, 400)).float() + grain
    noisy = write_pngs(root / "b", noisy_digits.clamp(0, 255).round().to(torch.uint8))
    return clean, noisy


@pytest.mark.slow
@pytest.mark.parametrize("dims", [64, 192])
def test_cli_fid_equals_pytorch_fid_cli(dims, two_image_folders, standin_torch_home):
    from conftest import test_env

    env = test_env(TORCH_HOME=str(standin_torch_home))
    folder_a, folder_b = map(str, two_image_folders)
    common = ["--dims", str(dims), "--batch-size", "50", "--device", "cpu", "--num-workers", "0"]
    ours = _cli("atelier.core.metrics", "fid", folder_a, folder_b, *common, env=env)
    theirs = _cli("pytorch_fid", folder_a, folder_b, *common, env=env)
    ours_fid = float(re.fullmatch(r"FID: (\S+)\n", ours).group(1))
    theirs_fid = float(re.search(r"FID:\s+(\S+)", theirs).group(1))
    print(f"dims {dims}: atelier {ours_fid!r}, pytorch_fid {theirs_fid!r}")
    assert ours_fid > 0.1  # a real difference to agree on
    assert ours_fid == pytest.approx(theirs_fid, rel=1e-3)


@pytest.mark.slow  # a subprocess loading torch and Inception: over 10 s on a busy CPU
def test_cli_inception_score_prints_mean_and_std(tmp_path, standin_torch_home):
    from conftest import test_env

    folder = write_pngs(tmp_path / "images", digits(range(4)))
    output = _cli("atelier.core.metrics", "is", str(folder), "--splits", "2", "--device", "cpu",
                  "--num-workers", "0", env=test_env(TORCH_HOME=str(standin_torch_home)))
    mean, std = map(float, re.fullmatch(r"IS: (\S+) \+- (\S+)\n", output).groups())
    assert 1.0 <= mean <= 1008 and std >= 0
