"""DVC versions the images: real ``dvc`` commands in a temporary clone of the project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, test_env

from atelier.tracking.lineage import dvc_data_version, folder_files


def _run(repo: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=repo, env=test_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


@pytest.mark.slow
def test_images_survive_push_delete_and_pull(tmp_path, sample_images_dir):
    repo = tmp_path / "repo"
    _run(tmp_path, "git", "clone", "-q", str(PROJECT_ROOT), str(repo))
    images = repo / "data" / "01_raw" / "images"
    shutil.copytree(sample_images_dir, images)
    recorded = dvc_data_version(repo, "data/01_raw/images")
    assert recorded is not None  # the bundled sample is tracked in git by its .dvc file

    # The sample's bytes are deterministic: re-adding it reproduces the committed hash.
    _dvc(repo, "add", "data/01_raw/images")
    assert dvc_data_version(repo, "data/01_raw/images") == recorded
    assert "images.dvc" not in _run(repo, "git", "status", "--porcelain")

    # A studio adds an image: a new data version.
    extra = images / "studio" / "new.png"
    extra.parent.mkdir()
    shutil.copy2(next((sample_images_dir / "3").iterdir()), extra)
    _dvc(repo, "add", "data/01_raw/images")
    assert dvc_data_version(repo, "data/01_raw/images") != recorded
    before = folder_files(images)
    assert len(before) == 1798

    remote = tmp_path / "remote"
    _dvc(repo, "remote", "add", "--local", "--default", "trial", str(remote))
    _dvc(repo, "push", "data/01_raw/images.dvc")
    shutil.rmtree(images)
    shutil.rmtree(repo / ".dvc" / "cache")
    _dvc(repo, "pull", "data/01_raw/images.dvc")
    assert folder_files(images) == before  # every file back, byte for byte (sha256)
    # The remote lives in .dvc/config.local, never in the committed .dvc/config.
    assert str(remote) not in (repo / ".dvc" / "config").read_text()
    assert yaml.safe_load((repo / "data/01_raw/images.dvc").read_text())["outs"][0]["nfiles"] == 1798
